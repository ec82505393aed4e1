"""EXIF facts the recogniser uses (GPS, capture time, orientation), read defensively.

Camera and app EXIF is often wrong: zero denominators, ``0/0`` coordinates from phones without a fix, blank
dates. Anything that does not parse into a plausible value becomes ``None`` instead of failing the photo.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from PIL import ExifTags, Image

ORIENTATION_TAG = ExifTags.Base.Orientation  # 0x0112
_GPS_LAT_REF = ExifTags.GPS.GPSLatitudeRef
_GPS_LAT = ExifTags.GPS.GPSLatitude
_GPS_LON_REF = ExifTags.GPS.GPSLongitudeRef
_GPS_LON = ExifTags.GPS.GPSLongitude

# EXIF orientation -> the transpose that makes the stored pixels upright (same table as ImageOps.exif_transpose).
TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})

_DATETIME_FORMATS = ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


@dataclass(frozen=True)
class PhotoMeta:
    """What the pipeline needs to know about a photo besides its pixels."""

    width: int  # original size after EXIF orientation
    height: int
    format: str | None  # "JPEG", "PNG", "HEIF", ...
    gps: tuple[float, float] | None  # (lat, lon) in degrees
    taken_at: datetime | None  # EXIF DateTimeOriginal; aware when OffsetTimeOriginal is present


def read_exif(im: Image.Image) -> Image.Exif:
    """The image's EXIF, or an empty one when the block is unreadable (bad EXIF must not sink the photo)."""
    try:
        return im.getexif()
    except Exception:  # Pillow's EXIF parser raises many kinds on garbage; all mean "no EXIF"
        return Image.Exif()


def orientation(exif: Image.Exif) -> int:
    """EXIF orientation 1..8; anything else (absent, garbage) counts as 1, upright."""
    value = exif.get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and value in TRANSPOSE_FOR_ORIENTATION else 1


def upright_size(size: tuple[int, int], orient: int) -> tuple[int, int]:
    """Width and height as the photo is meant to be seen."""
    return (size[1], size[0]) if orient in _SWAPS_AXES else size


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _ref(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 ").upper() or None


def _degrees(value: Any, ref: Any, positive: str, negative: str, limit: float) -> float | None:
    """Degrees/minutes/seconds rationals plus a hemisphere letter -> signed decimal degrees, or None."""
    parts = value if isinstance(value, tuple | list) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    numbers = [_number(part) for part in parts]
    if any(n is None or n < 0 for n in numbers):
        return None
    deg, minutes, seconds = (*numbers, 0.0, 0.0)[:3]
    if minutes >= 60 or seconds >= 60:
        return None
    decimal = deg + minutes / 60 + seconds / 3600
    hemisphere = _ref(ref)
    if decimal > limit or hemisphere not in (positive, negative):
        return None
    return -decimal if hemisphere == negative else decimal


def parse_gps(gps_ifd: Mapping[int, Any]) -> tuple[float, float] | None:
    """(lat, lon) from an EXIF GPS IFD; None when absent, out of range, NaN, or exactly (0, 0).

    A missing N/S or E/W reference also gives None: guessing the hemisphere would put the photo on the wrong
    continent, which is worse than no position for the GPS-radius check. (0, 0) is what phones write without a fix.
    """
    lat = _degrees(gps_ifd.get(_GPS_LAT), gps_ifd.get(_GPS_LAT_REF), "N", "S", 90.0)
    lon = _degrees(gps_ifd.get(_GPS_LON), gps_ifd.get(_GPS_LON_REF), "E", "W", 180.0)
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
        return None
    return (lat, lon)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 ") or None


def parse_taken_at(exif_ifd: Mapping[int, Any]) -> datetime | None:
    """DateTimeOriginal (+ SubSecTimeOriginal, + OffsetTimeOriginal for an aware datetime), else None."""
    text = _text(exif_ifd.get(ExifTags.Base.DateTimeOriginal))
    if text is None:
        return None
    taken: datetime | None = None
    for fmt in _DATETIME_FORMATS:
        try:
            taken = datetime.strptime(text[:19], fmt)
            break
        except ValueError:
            continue
    if taken is None:
        return None
    subsec = _text(exif_ifd.get(ExifTags.Base.SubsecTimeOriginal))
    if subsec and subsec.isdigit():
        taken = taken.replace(microsecond=int(subsec[:6].ljust(6, "0")))
    offset = _text(exif_ifd.get(ExifTags.Base.OffsetTimeOriginal))
    match = _OFFSET.match(offset) if offset else None
    if match:
        delta = timedelta(hours=int(match[2]), minutes=int(match[3]))
        if delta < timedelta(hours=24):
            taken = taken.replace(tzinfo=timezone(-delta if match[1] == "-" else delta))
    elif offset == "Z":
        taken = taken.replace(tzinfo=UTC)
    return taken


def photo_meta(exif: Image.Exif, *, size: tuple[int, int], format: str | None) -> PhotoMeta:
    """Assemble :class:`PhotoMeta` from a header size (as stored) and the EXIF block."""
    width, height = upright_size(size, orientation(exif))
    try:
        gps = parse_gps(exif.get_ifd(ExifTags.IFD.GPSInfo))
    except Exception:  # a broken GPS IFD pointer is garbage GPS, not a broken photo
        gps = None
    try:
        taken_at = parse_taken_at(exif.get_ifd(ExifTags.IFD.Exif))
    except Exception:  # same for the EXIF sub-IFD
        taken_at = None
    return PhotoMeta(width=width, height=height, format=format, gps=gps, taken_at=taken_at)
