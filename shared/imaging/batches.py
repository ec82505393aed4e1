"""The one fetch -> decode -> embed loop that model build, training, cleaning and evaluation share.

Photos are read (from object storage or from files), decoded and handed to the network a batch at a time; a photo
that cannot be read or decoded is reported with its reason and skipped, and the batch goes on. The recognize
worker's own path (:mod:`shared.photos.recognize`) decodes on threads and turns each failure into a recorded task
error, so it keeps its own loop over :func:`shared.imaging.decode_photo`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from minio import Minio
from PIL import Image

from shared.imaging.decode import DEFAULT_MAX_PIXELS, DecodedPhoto, Fit, decode_photo
from shared.imaging.errors import ImageDecodeError
from shared.storage import ObjectMissing, read_object

T = TypeVar("T")
MAX_GALLERY_OBJECT_BYTES = 100 * 1024 * 1024  # gallery photos are the operator's: a generous cap

# What makes one photo unusable without stopping the others. An object store that cannot be reached is not among
# them: it stops the loop (a model built from half its photos would be silently worse).
OBJECT_SKIPPED: tuple[type[Exception], ...] = (ObjectMissing, ImageDecodeError, ValueError)  # ValueError: over the cap
FILE_SKIPPED: tuple[type[Exception], ...] = (ImageDecodeError, OSError)  # a missing or unreadable file


class EmbedsImages(Protocol):
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray: ...


@dataclass
class DecodedBatch:
    """The photos of one batch that decoded, their positions in the input, and the ones that did not."""

    indices: list[int]
    photos: list[DecodedPhoto]
    failed: list[tuple[int, str]] = field(default_factory=list)
    decode_s: float = 0.0

    @property
    def images(self) -> list[Image.Image]:
        return [p.image for p in self.photos]


def decoded_batches(
    items: Sequence[T],
    load: Callable[[T], DecodedPhoto],
    *,
    batch_size: int,
    skipped: tuple[type[Exception], ...] = FILE_SKIPPED,
) -> Iterator[DecodedBatch]:
    """``items`` loaded and decoded ``batch_size`` at a time; a photo whose load raises one of ``skipped`` is
    reported in ``failed``. Every batch is yielded, even one whose photos all failed, so callers count progress."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    for start in range(0, len(items), batch_size):
        t0 = time.perf_counter()
        batch = DecodedBatch([], [])
        for i in range(start, min(start + batch_size, len(items))):
            try:
                photo = load(items[i])
            except skipped as exc:
                batch.failed.append((i, str(exc)))
                continue
            batch.indices.append(i)
            batch.photos.append(photo)
        batch.decode_s = time.perf_counter() - t0
        yield batch


def object_loader(
    client: Minio, *, min_side: int, max_bytes: int, max_pixels: int = DEFAULT_MAX_PIXELS, fit: Fit = "short"
) -> Callable[[tuple[str, str]], DecodedPhoto]:
    """A ``load`` for :func:`decoded_batches` over ``(bucket, key)`` pairs in object storage."""

    def load(obj: tuple[str, str]) -> DecodedPhoto:
        bucket, key = obj
        data = read_object(client, bucket, key, max_bytes=max_bytes)
        return decode_photo(data, min_side=min_side, fit=fit, max_pixels=max_pixels)

    return load


def file_loader(
    *, min_side: int, max_pixels: int = DEFAULT_MAX_PIXELS, fit: Fit = "short"
) -> Callable[[Path], DecodedPhoto]:
    """A ``load`` for :func:`decoded_batches` over photo files."""

    def load(path: Path) -> DecodedPhoto:
        return decode_photo(path, min_side=min_side, fit=fit, max_pixels=max_pixels)

    return load


@dataclass
class Embedded:
    """Embeddings of the objects that decoded (rows in input order), their positions, and the failures by key."""

    embeddings: np.ndarray
    ok: list[int]
    failed: list[tuple[str, str]] = field(default_factory=list)


def embed_objects(
    client: Minio,
    embedder: EmbedsImages,
    objects: Sequence[tuple[str, str]],
    *,
    min_side: int,
    fit: Fit = "short",
    max_bytes: int = MAX_GALLERY_OBJECT_BYTES,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> Embedded:
    """Fetch, decode (``min_side`` on the ``fit`` side: :func:`shared.imaging.fit_for_resize` for a network)
    and embed objects in batches; undecodable or missing ones are reported, not fatal."""
    vectors: list[np.ndarray] = []
    ok: list[int] = []
    failed: list[tuple[str, str]] = []
    load = object_loader(client, min_side=min_side, max_bytes=max_bytes, fit=fit)
    for batch in decoded_batches(objects, load, batch_size=batch_size, skipped=OBJECT_SKIPPED):
        failed.extend((objects[i][1], reason) for i, reason in batch.failed)
        if batch.photos:
            vectors.append(embedder.embed(batch.images))
            ok.extend(batch.indices)
        if progress:
            progress(len(batch.indices) + len(batch.failed))
    dim = vectors[0].shape[1] if vectors else 0
    return Embedded(np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32), ok, failed)
