"""Photo decoding: upload bytes -> upright RGB pixels sized for the CNN, plus GPS and capture time.

Importing this package sets two pieces of process-wide Pillow state, on purpose and nowhere else:
``Image.MAX_IMAGE_PIXELS`` becomes :data:`DEFAULT_MAX_PIXELS` (Pillow warns above it and refuses above twice
it) and pillow-heif's opener is registered so HEIC/HEIF opens like any other format.
"""

from shared.imaging.budget import DEFAULT_MAX_DECODE_BYTES
from shared.imaging.decode import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    DecodedPhoto,
    Fit,
    Source,
    decode_photo,
    fit_for_resize,
    read_meta,
)
from shared.imaging.errors import ImageDecodeError
from shared.imaging.meta import PhotoMeta, parse_gps, parse_taken_at

__all__ = [
    "DEFAULT_MAX_DECODE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIDE",
    "DecodedPhoto",
    "Fit",
    "ImageDecodeError",
    "PhotoMeta",
    "Source",
    "decode_photo",
    "fit_for_resize",
    "parse_gps",
    "parse_taken_at",
    "read_meta",
]
