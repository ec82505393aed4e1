"""Why a photo cannot be decoded, as a short code the pipeline records instead of retrying."""

from __future__ import annotations

import struct

from PIL import Image, UnidentifiedImageError

from shared.errors import PermanentError
from shared.imaging.formats import refused_format

# Exceptions Pillow and its plugins raise on hostile or broken input (Pillow documents no single base class).
PILLOW_ERRORS: tuple[type[BaseException], ...] = (
    Image.DecompressionBombError,  # a plain Exception, not an OSError
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    RuntimeError,
)

# First bytes of the formats uploads come in; used to tell "not an image" from "an image we cannot read".
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (8, b"WEBP", "WEBP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"BM", "BMP"),
    (4, b"ftypheic", "HEIF"),
    (4, b"ftypheix", "HEIF"),
    (4, b"ftyphevc", "HEIF"),
    (4, b"ftypheim", "HEIF"),
    (4, b"ftypheis", "HEIF"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypmsf1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
)


class ImageDecodeError(PermanentError):
    """The bytes are not a usable image and never will be: record it, do not retry.

    ``reason`` is one of ``empty``, ``not_an_image``, ``truncated``, ``too_large``, ``unsupported`` or
    ``corrupt`` (the format is recognised but its data is damaged in some other way than being cut short).
    """

    reason: str

    def __reduce__(self) -> tuple[type[ImageDecodeError], tuple[str, str]]:
        """Pickle as (reason, message): the default would replay only the message into a 2-argument __init__."""
        return type(self), (self.reason, str(self))


def sniff_format(head: bytes) -> str | None:
    """Name the container from its first bytes, without trusting Pillow to have a plugin for it."""
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def _riff_cut_short(head: bytes, length: int | None) -> bool:
    """RIFF (WebP) states its own length; libwebp only says "could not create decoder object"."""
    if length is None or len(head) < 8 or head[:4] != b"RIFF":
        return False
    declared = int.from_bytes(head[4:8], "little") + 8
    return length < declared


def classify(exc: BaseException, *, head: bytes, length: int | None) -> ImageDecodeError:
    """Turn whatever Pillow or pillow-heif raised into an :class:`ImageDecodeError` with a reason code."""
    if isinstance(exc, ImageDecodeError):
        return exc
    text = str(exc) or type(exc).__name__
    sniffed = sniff_format(head)
    if isinstance(exc, Image.DecompressionBombError):
        return ImageDecodeError("too_large", f"header claims too many pixels: {text}")
    if isinstance(exc, UnidentifiedImageError):
        if sniffed is None:
            refused = refused_format(head)
            if refused is not None:
                return ImageDecodeError("unsupported", f"{refused} images are not accepted (not a photo format)")
            return ImageDecodeError("not_an_image", "not an image: no image format recognises these bytes")
        if sniffed in ("HEIF", "AVIF") and sniffed not in Image.OPEN:
            return ImageDecodeError("unsupported", f"{sniffed} image but no decoder is installed for it")
        if _riff_cut_short(head, length):
            return ImageDecodeError("truncated", f"{sniffed} file is cut short")
        return ImageDecodeError("corrupt", f"{sniffed} header cannot be read (cut short or damaged)")
    lowered = text.lower()
    if isinstance(exc, EOFError) or "truncated" in lowered or "end of file" in lowered or _riff_cut_short(head, length):
        return ImageDecodeError("truncated", f"image file is truncated: {text}")
    if "not available" in lowered or "cannot find loader" in lowered or "not supported" in lowered:
        return ImageDecodeError("unsupported", f"image cannot be decoded here: {text}")
    return ImageDecodeError("corrupt", f"image data is damaged: {text}")
