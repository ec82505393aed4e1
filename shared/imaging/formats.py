"""Which image formats uploads may be in: the photo formats below are decoded, every other one is refused.

Pillow opens some forty formats, several rarely used and with a history of out-of-bounds bugs (PSD's
out-of-bounds write fixed in Pillow 12.1.1; EPS runs Ghostscript). Only the allowed plugins are given to
``Image.open``, so Pillow never parses another format past its accept check; :func:`refused_format` names such a
format from its first bytes so the failure reads ``unsupported`` rather than ``not_an_image``.
"""

from __future__ import annotations

from PIL import Image

# MPO is how Pillow names the multi-picture JPEGs phones write; AVIF is Pillow's own plugin, HEIF pillow-heif's.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF", "TIFF", "GIF", "BMP")


def open_formats() -> list[str]:
    """The allowed formats this Pillow (and pillow-heif) can open, in Pillow's own order."""
    Image.init()
    return [fmt for fmt in Image.ID if fmt in ALLOWED_FORMATS]


def refused_format(head: bytes) -> str | None:
    """The name of a format Pillow knows but uploads may not use whose signature ``head`` carries, else None."""
    Image.init()
    for fmt in Image.ID:
        if fmt in ALLOWED_FORMATS:
            continue
        _factory, accept = Image.OPEN[fmt]
        if accept is None:  # no signature (TGA, ...): it cannot be recognised from its header alone
            continue
        try:
            if accept(head):
                return fmt
        except Exception:  # an accept check on too short a head; it is not that format
            continue
    return None
