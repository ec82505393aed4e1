"""Upload bytes -> an upright RGB image just big enough for the CNN, decoding as few pixels as possible.

A 12 MP phone JPEG costs ~120 ms to decode in full but ~20 ms when libjpeg scales it in the DCT domain
(``Image.draft``), so the target size is worked out from the header first and the decoder asked for the
smallest scale that still covers it; Pillow's resize then finishes the job.

The target is ``min_side`` pixels on the side the consumer names (``fit``): the shorter side by default, the
longer side for a network that fits the whole photo into ``min_side`` (``resize="long"``) when the model was built
with ``recognition.decode_fit = long``: a 4000 x 3000 JPEG for a 384 px network then decodes at 1/8
(500 x 375 -> 384 x 288) instead of 1/4 (1000 x 750 -> 512 x 384, which the network shrinks again).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Literal, TypeVar

from PIL import Image, ImageFile, PngImagePlugin

from shared.imaging.budget import DEFAULT_MAX_DECODE_BYTES, decode_cost
from shared.imaging.convert import NATIVE_MODES, reduce_to_eight_bit
from shared.imaging.errors import PILLOW_ERRORS, ImageDecodeError, classify
from shared.imaging.formats import open_formats
from shared.imaging.meta import (
    TRANSPOSE_FOR_ORIENTATION,
    PhotoMeta,
    orientation,
    photo_meta,
    read_exif,
)

try:
    from pillow_heif import register_heif_opener
except ImportError:  # pillow-heif is a dependency; without it HEIC uploads fail as "unsupported"
    register_heif_opener = None

DEFAULT_MIN_SIDE = 320
DEFAULT_MAX_PIXELS = 200_000_000

# Process-wide Pillow state, set once on import and nowhere else:
# - Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that, before any pixel is decoded. Setting it to
#   our default limit means Pillow warns exactly where decode_photo starts refusing, and its hard stop (400 MP)
#   backs up our own header check; a caller passing max_pixels above 400 MP is still capped there.
# - LOAD_TRUNCATED_IMAGES stays False: a cut-off upload must fail, not become half a grey picture.
# - The HEIF opener is registered so Image.open reads HEIC/HEIF (with its default options).
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
if register_heif_opener is not None:
    register_heif_opener()

# The last resize: Lanczos to a shorter side (thumbnails, training crops); to a longer side the photo goes straight
# into the network, so it is resampled with the network's own filter (shared.model.preprocess.resize: bilinear), as
# it was when the network resized it. Those pixels stay within 2.0 grey levels (median RMSE, 150 ../shared/data
# photos) of the old decode-then-resize path; Lanczos there moved 4.2 and cost 3 of 216 landmarks in eval.
_RESAMPLE: dict[str, Image.Resampling] = {"short": Image.Resampling.LANCZOS, "long": Image.Resampling.BILINEAR}
# Box-reduce by an integer factor first, Lanczos for the last 2-4x: half to a third of a plain Lanczos resize
# from a 3-12 MP PNG/WebP/HEIF (JPEG arrives already within 2x through draft, so it is unaffected).
_REDUCING_GAP = 2.0
_WHITE = (255, 255, 255)

Source = bytes | bytearray | memoryview | BinaryIO | str | os.PathLike[str]
T = TypeVar("T")
Fit = Literal["short", "long"]  # which side of the photo ``min_side`` is measured on
FITS: tuple[Fit, ...] = ("short", "long")


@dataclass(frozen=True)
class DecodedPhoto:
    """Pixels ready for the model plus the photo's metadata."""

    image: Image.Image  # RGB, upright, the fitted side == min_side (or smaller when the original was smaller)
    meta: PhotoMeta


def decode_photo(
    source: Source,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    fit: Fit = "short",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> DecodedPhoto:
    """Decode an upload to RGB, EXIF orientation applied, its ``fit`` side (shorter or longer) reduced to
    ``min_side``.

    ``source`` is the bytes, a binary file object (read from offset 0, not closed) or a path. Raises
    :class:`ImageDecodeError` for bytes that are not a usable image; a missing path raises ``OSError`` as usual.
    Images with more than ``max_pixels`` pixels, or whose decode would take more than ``max_decode_bytes`` of
    memory (:func:`~shared.imaging.budget.decode_cost`), are refused as ``too_large`` from their header, before
    decoding. Formats outside :data:`~shared.imaging.formats.ALLOWED_FORMATS` are refused as ``unsupported``.
    """
    if min_side < 1 or max_pixels < 1 or max_decode_bytes < 1:
        raise ValueError("min_side, max_pixels and max_decode_bytes must be positive")
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; known: {', '.join(FITS)}")

    def work(im: ImageFile.ImageFile) -> DecodedPhoto:
        width, height = im.size
        if width * height > max_pixels:
            raise ImageDecodeError(
                "too_large", f"{width}x{height} is {width * height} pixels, more than the limit of {max_pixels}"
            )
        stored, fmt = im.size, im.format
        target = _target_size(stored, min_side, fit)
        if target != stored:
            im.draft(None, target)  # JPEG: DCT-domain scaling; HEIF: an embedded thumbnail; others: no-op
        factor = _reduce_factor(im.size, target)
        cost = decode_cost(im, stored, factor)
        if cost > max_decode_bytes:
            raise ImageDecodeError(
                "too_large",
                f"{width}x{height} {fmt} in mode {im.mode} needs about {cost >> 20} MiB to decode, "
                f"more than the limit of {max_decode_bytes >> 20} MiB",
            )
        im.load()
        exif = read_exif(im)  # after load(): PNG keeps eXIf after the pixel data
        meta = photo_meta(exif, size=stored, format=fmt)
        image = _flatten(_resize(_reduced(im, factor), target, _RESAMPLE[fit]))
        turn = TRANSPOSE_FOR_ORIENTATION.get(orientation(exif))
        if turn is not None:
            image = image.transpose(turn)
        if image is im:  # nothing to do: detach from the file so the result outlives it
            image = im.copy()
        return DecodedPhoto(image=image, meta=meta)

    return _with_image(source, work)


def fit_for_resize(resize: str, decode_fit: str = "short") -> Fit:
    """The side a photo is decoded to ``min_side`` pixels on, for a network's resize mode
    (``shared.model.preprocess.resize``) and the decode the model was built with (``recognition.decode_fit``).

    ``short`` (the default) decodes the shorter side to the network's size: a 12 MP JPEG at DCT 1/4, then Lanczos.
    ``long`` is taken only with the ``long`` resize, which fits the whole photo into the network's size, so the
    longer side is all it needs: DCT 1/8 and one bilinear step, ~0.7x the decode time, but on ``../shared/data`` one
    to three photos in 200 fewer right (``docs/research-notes.md``). ``crop`` and ``square`` always need the
    shorter side. Use with :func:`shared.model.factory.decode_side`."""
    return "long" if resize == "long" and decode_fit == "long" else "short"


def read_meta(source: Source) -> PhotoMeta:
    """Size after orientation, format, GPS and capture time from the header and EXIF, decoding no pixels.

    It does not apply ``max_pixels`` (only Pillow's hard stop at twice ``Image.MAX_IMAGE_PIXELS``), and it
    cannot see a truncated body: :func:`decode_photo` is the one that proves the image usable.
    """

    def work(im: ImageFile.ImageFile) -> PhotoMeta:
        # For a PNG without eXIf before its pixels, Pillow would decode the whole image to look after them.
        png_without_exif = isinstance(im, PngImagePlugin.PngImageFile) and "exif" not in im.info
        exif = Image.Exif() if png_without_exif else read_exif(im)
        return photo_meta(exif, size=im.size, format=im.format)

    return _with_image(source, work)


def _with_image(source: Source, work: Callable[[ImageFile.ImageFile], T]) -> T:
    """Open ``source`` lazily and run ``work`` on it, turning every decoder failure into ImageDecodeError."""
    stream, owned = _stream(source)
    try:
        stream.seek(0)
        head = stream.read(32)
        length = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        if length == 0:
            raise ImageDecodeError("empty", "the upload has zero bytes")
        try:
            with Image.open(stream, formats=open_formats()) as im:
                return work(im)
        except ImageDecodeError:
            raise
        except PILLOW_ERRORS as exc:
            raise classify(exc, head=head, length=length) from exc
    finally:
        if owned:
            stream.close()


def _stream(source: Source) -> tuple[BinaryIO, bool]:
    """A seekable binary stream over ``source`` and whether we opened it (and so must close it)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source), False
    if isinstance(source, str | os.PathLike):
        return open(source, "rb"), True  # noqa: SIM115 - closed by _with_image
    seekable = getattr(source, "seekable", None)
    if seekable is not None and seekable():
        return source, False
    return io.BytesIO(source.read()), False


def _target_size(size: tuple[int, int], min_side: int, fit: Fit = "short") -> tuple[int, int]:
    """Smallest size with the same aspect whose ``fit`` side is ``min_side``; never larger than ``size``.

    The longer side of a ``long`` fit is the size :func:`shared.model.preprocess.resize` gives in its ``long``
    mode (``round(side * scale)``), so the network then has nothing left to resize."""
    width, height = size
    if fit == "long":
        long = max(width, height)
        if long <= min_side:
            return size
        scale = min_side / long
        return max(1, round(width * scale)), max(1, round(height * scale))
    short = min(width, height)
    if short <= min_side:
        return size
    scale = min_side / short
    if width <= height:
        return min_side, max(min_side, round(height * scale))
    return max(min_side, round(width * scale)), min_side


def _reduce_factor(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The integer box reduction Pillow's resize would apply first with ``reducing_gap`` (1 when none)."""
    return (
        max(1, int(size[0] / target[0] / _REDUCING_GAP)),
        max(1, int(size[1] / target[1] / _REDUCING_GAP)),
    )


def _reduced(im: Image.Image, factor: tuple[int, int]) -> Image.Image:
    """L, RGB or RGBA: as they are (resize reduces them itself), any other mode converted and reduced in strips."""
    return im if im.mode in NATIVE_MODES else reduce_to_eight_bit(im, factor)


def _resize(im: Image.Image, target: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    return im if im.size == target else im.resize(target, resample, reducing_gap=_REDUCING_GAP)


def _flatten(im: Image.Image) -> Image.Image:
    """RGB at last: transparency goes onto white (what a viewer shows), grey is replicated."""
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, _WHITE)
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im if im.mode == "RGB" else im.convert("RGB")
