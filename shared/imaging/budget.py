"""What decoding an image will cost in memory, worked out from its header before a pixel is decoded.

The pixel cap alone does not bound memory: 196 MP is 196 MB as 8-bit grey, 784 MB as 32-bit integers, and some
decoders hold a second copy of their own (libwebp and libheif decode into a buffer Pillow then copies; libtiff
holds one uncompressed strip or tile; a progressive JPEG keeps every DCT coefficient of the full-size picture
whatever the reduced scale). :func:`decode_cost` adds those up per format so that ``decode_photo`` can refuse,
as ``too_large``, a picture that would not fit its budget instead of being killed for it.
"""

from __future__ import annotations

from PIL import Image

from shared.imaging.convert import NATIVE_MODES, STRIP_PIXELS

DEFAULT_MAX_DECODE_BYTES = 1 << 30  # fits a 1 GiB budget per decode beside the interpreter and the model

_TWO_COPY_FORMATS = frozenset({"WEBP", "HEIF", "AVIF"})
_TIFF_ROWS_PER_STRIP = 278
_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 322, 323
_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLES_PER_PIXEL = 258, 277
# A strip being converted: its crop, the numpy view of it and the converted strip, at up to 8 bytes a pixel each.
_STRIP_BYTES = STRIP_PIXELS * 8 * 3


def bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow stores per pixel of ``mode``: 1 for 1/L/P, 2 for I;16*, 4 for everything else."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def decode_cost(im: Image.Image, stored: tuple[int, int], factor: tuple[int, int]) -> int:
    """Peak bytes the decode of ``im`` takes (after ``draft``: ``im.size`` is what the decoder will produce).

    ``stored`` is the size in the file, ``factor`` the box reduction applied before the final resize.
    """
    width, height = im.size
    buffer = width * height * bytes_per_pixel(im.mode)
    reduced = -(-width // factor[0]) * -(-height // factor[1]) * 4
    converting = _STRIP_BYTES if im.mode not in NATIVE_MODES else 0
    return buffer + reduced + converting + _decoder_extra(im, stored, buffer)


def _decoder_extra(im: Image.Image, stored: tuple[int, int], buffer: int) -> int:
    """What the format's decoder holds beside Pillow's buffer."""
    fmt = im.format
    if fmt in _TWO_COPY_FORMATS:
        return buffer
    if fmt in ("JPEG", "MPO") and (im.info.get("progressive") or im.info.get("progression")):
        return _jpeg_coefficients(im, stored)
    if fmt == "TIFF":
        return _tiff_block(im)
    return 0


def _jpeg_coefficients(im: Image.Image, stored: tuple[int, int]) -> int:
    """A progressive JPEG's coefficient arrays: 2 bytes per coefficient of every component at full size."""
    layers = getattr(im, "layer", None) or [("", 1, 1, 0)] * 3
    h_max = max(h for _, h, _, _ in layers)
    v_max = max(v for _, _, v, _ in layers)
    share = sum(h * v for _, h, v, _ in layers) / (h_max * v_max)
    return int(stored[0] * stored[1] * share * 2)


def _tiff_block(im: Image.Image) -> int:
    """libtiff's buffer for one uncompressed strip or tile (a hostile file may make it the whole image)."""
    tags = getattr(im, "tag_v2", {})
    width, height = im.size
    bits = tags.get(_TIFF_BITS_PER_SAMPLE, 8)
    bits = sum(bits) if isinstance(bits, tuple) else int(bits) * int(tags.get(_TIFF_SAMPLES_PER_PIXEL, 1))
    tile_w, tile_h = tags.get(_TIFF_TILE_WIDTH), tags.get(_TIFF_TILE_LENGTH)
    if tile_w and tile_h:
        return int(tile_w) * int(tile_h) * bits // 8
    rows = min(height, int(tags.get(_TIFF_ROWS_PER_STRIP, height) or height))
    return width * rows * bits // 8
