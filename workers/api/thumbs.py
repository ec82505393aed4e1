"""Thumbnails made on the fly from the user's own object (never copied), kept in a bounded in-memory cache.

Keyed by the object's eTag, so an overwritten photo never shows a stale thumbnail. Sizes snap to a few fixed
widths: a caller cannot fill the cache with every size from 1 to 1024.
"""

from __future__ import annotations

import io
from functools import lru_cache

from minio import Minio

from shared.imaging import DEFAULT_MAX_DECODE_BYTES, decode_photo
from shared.storage import read_object

SIZES = (128, 256, 512, 1024)
MAX_OBJECT_BYTES = 200 * 1024 * 1024  # as the recognize workers allow
JPEG_QUALITY = 85


def snap(size: int) -> int:
    """The smallest fixed size at least ``size`` (the largest when none is)."""
    return next((s for s in SIZES if s >= size), SIZES[-1])


class Thumbnailer:
    """JPEG thumbnails whose longer side is at most ``size``, EXIF orientation applied."""

    def __init__(
        self,
        client: Minio,
        *,
        max_pixels: int,
        max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
        cache_entries: int = 2048,
    ) -> None:
        self._client = client
        self._max_pixels = max_pixels
        self._max_decode_bytes = max_decode_bytes
        self._cached = lru_cache(maxsize=cache_entries)(self._render)

    def thumbnail(self, bucket: str, key: str, etag: str | None, size: int) -> bytes:
        """Raises ``ObjectMissing``, ``ImageDecodeError`` or ``ServiceUnavailable`` (S3 down)."""
        return self._cached(bucket, key, etag, snap(size))

    def _render(self, bucket: str, key: str, etag: str | None, size: int) -> bytes:
        data = read_object(self._client, bucket, key, max_bytes=MAX_OBJECT_BYTES)
        image = decode_photo(
            data, min_side=size, max_pixels=self._max_pixels, max_decode_bytes=self._max_decode_bytes
        ).image
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return out.getvalue()
