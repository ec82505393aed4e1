"""Any Pillow mode -> 8-bit L, RGB or RGBA, reduced by an integer factor, a strip of rows at a time.

Converting a decoded picture in one piece costs a second full-size copy in the wider mode (a 16-bit grey PNG of
196 MP widened to int64 took 2.3 GB), so every mode that needs converting is cropped into strips of about
:data:`STRIP_PIXELS`, each converted and box-reduced on its own: the memory beyond the decoded buffer is the
reduced result plus one strip, whatever the picture's size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared.imaging.errors import ImageDecodeError

NATIVE_MODES = frozenset({"L", "RGB", "RGBA"})
STRIP_PIXELS = 1 << 20


def reduce_to_eight_bit(im: Image.Image, factor: tuple[int, int]) -> Image.Image:
    """``im`` in L, RGB or RGBA, box-reduced by ``factor`` (x, y), converted a strip of rows at a time."""
    width, height = im.size
    fx, fy = factor
    rows = max(fy, STRIP_PIXELS // max(1, width) // fy * fy)  # a multiple of fy: strips reduce like the whole
    scale = _float_scale(im, rows) if im.mode == "F" else 1.0
    parts: list[Image.Image] = []
    for top in range(0, height, rows):
        strip = _eight_bit_or_rgb(im.crop((0, top, width, min(height, top + rows))), scale)
        parts.append(strip.reduce((fx, fy)) if (fx, fy) != (1, 1) else strip)
    if len(parts) == 1:
        return parts[0]
    out = Image.new(parts[0].mode, (parts[0].width, sum(p.height for p in parts)))
    top = 0
    for part in parts:
        out.paste(part, (0, top))
        top += part.height
    return out


def _eight_bit_or_rgb(im: Image.Image, scale: float) -> Image.Image:
    """Bring any Pillow mode to L, RGB or RGBA (alpha kept so that resize weighs it correctly)."""
    if im.mode in NATIVE_MODES:
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return _grey_from_wide(im, scale)
    if im.mode == "1":
        return im.convert("L")
    target = "RGBA" if im.has_transparency_data else "RGB"
    try:
        return im.convert(target)
    except ValueError as exc:  # e.g. LAB: Pillow cannot convert it without a colour profile
        raise ImageDecodeError("unsupported", f"colour mode {im.mode} cannot be converted to RGB") from exc


def _float_scale(im: Image.Image, rows: int) -> float:
    """Float grey in 0..1 is stretched to 0..255, anything brighter taken as already 0..255 (peak over all strips)."""
    width, height = im.size
    peak = 0.0
    for top in range(0, height, rows):
        values = _finite(np.asarray(im.crop((0, top, width, min(height, top + rows)))))
        peak = max(peak, float(values.max(initial=0.0)))
    return 255.0 if peak <= 1.0 else 1.0


def _finite(values: np.ndarray) -> np.ndarray:
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def _grey_from_wide(im: Image.Image, scale: float) -> Image.Image:
    """16-bit / 32-bit grey to 8 bits by scaling; Pillow's own convert clips everything above 255 to white."""
    values = np.asarray(im)
    if im.mode == "F":
        eight = np.clip(_finite(values) * scale, 0, 255)
    elif im.mode.startswith("I;16"):  # 0..65535 already: no widening at all
        eight = values >> 8
    else:  # I (16-bit PNG/TIFF read as 32-bit, or 32-bit integer TIFF): 0..65535 are the meaningful values
        eight = np.clip(values, 0, 65535) >> 8
    return Image.fromarray(eight.astype(np.uint8))
