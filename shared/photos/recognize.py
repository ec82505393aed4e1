"""The recognize step, free of Celery: claim a photo, fetch and decode it, recognise it.

``recognize_objects`` runs on the recognize workers: fetch and decode each photo of a micro-batch (on several
threads on a GPU worker), then embed and decide all of them in one call (``recognize_object`` is the batch of
one). The outcome goes to the apply step (:mod:`shared.photos.apply`) through the albums queue.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from minio import Minio
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.db.models import Photo, PhotoStatus
from shared.errors import PermanentError
from shared.imaging import DEFAULT_MAX_DECODE_BYTES, DecodedPhoto, ImageDecodeError, decode_photo
from shared.photos.failures import record_failure
from shared.recognition.outcome import PhotoRecognizer, RecognitionOutcome, TagsScenes
from shared.storage import ObjectMissing, read_object


@dataclass(frozen=True)
class PhotoRef:
    photo_id: uuid.UUID
    bucket: str
    key: str
    etag: str | None
    deliveries: int = 0  # runs begun on the photo that never ended: a worker died with it (begin_runs)


def claim_photo(
    session: Session,
    photo_id: uuid.UUID,
    *,
    max_deliveries: int | None = None,
    task_name: str = "recognition.recognize_photo",
    task_id: str | None = None,
) -> PhotoRef | None:
    """Mark the photo processing; None when there is nothing to do (deleted, failed for good, unknown).

    A photo whose last ``max_deliveries`` runs all died with their worker (:func:`begin_runs` counted them, no
    :func:`end_runs` closed them) is a poison message: it is failed as ``worker_lost`` here and None returned,
    so it kills no further worker. The returned ref says how many such runs it has had (``deliveries``).
    """
    photo = session.get(Photo, photo_id, with_for_update=True)
    if photo is None or photo.status in (PhotoStatus.deleted, PhotoStatus.failed) or photo.owner_id is None:
        return None
    if max_deliveries is not None and photo.delivery_count >= max_deliveries:
        lost = photo.delivery_count
        photo.delivery_count = 0  # a retry by the operator starts a fresh count
        record_failure(
            session,
            task_name=task_name,
            reason="worker_lost",
            message=f"s3://{photo.bucket}/{photo.key}: {lost} recognition runs died with their worker (out of "
            "memory, a crash) and it is not tried again",
            photo_id=photo.id,
            bucket=photo.bucket,
            key=photo.key,
            task_id=task_id,
        )
        return None
    photo.status = PhotoStatus.processing
    return PhotoRef(photo.id, photo.bucket, photo.key, photo.etag, photo.delivery_count)


def begin_runs(session: Session, photo_ids: Sequence[uuid.UUID]) -> None:
    """Count a run on each photo before it starts: if the process dies during it, the count stays."""
    if photo_ids:
        session.execute(
            update(Photo)
            .where(Photo.id.in_(photo_ids))
            .values(delivery_count=Photo.delivery_count + 1, updated_at=Photo.updated_at)
        )


def end_runs(session: Session, photo_ids: Sequence[uuid.UUID]) -> None:
    """The runs ended, however they ended (a result, a recorded failure, a retry): nothing died with them."""
    if photo_ids:
        session.execute(
            update(Photo)
            .where(Photo.id.in_(photo_ids), Photo.delivery_count != 0)
            .values(delivery_count=0, updated_at=Photo.updated_at)
        )


# What a photo of a batch may end in instead of an outcome: PermanentError (record it once), TransientError (retry
# that photo), or any other exception, an unexpected fault of that photo alone (S3 answering 500, a decoder bug),
# which the caller treats as a single-photo task would treat it raised.
PhotoError = Exception


@dataclass(frozen=True)
class FetchedPhoto:
    """An object's bytes and how long reading them took."""

    data: bytes
    fetch_ms: float


def fetch_photo(client: Minio, ref: PhotoRef, *, max_bytes: int) -> FetchedPhoto:
    """Read one photo; a missing or oversized object raises PermanentError, an unreachable store TransientError."""
    t0 = time.perf_counter()
    try:
        data = read_object(client, ref.bucket, ref.key, max_bytes=max_bytes)
    except ObjectMissing as exc:
        raise PermanentError("object_missing", str(exc)) from exc
    except ValueError as exc:
        raise PermanentError("too_large", str(exc)) from exc
    return FetchedPhoto(data, (time.perf_counter() - t0) * 1e3)


def recognize_fetched(
    recognizer: PhotoRecognizer,
    refs: Sequence[PhotoRef],
    fetched: Sequence[FetchedPhoto | PhotoError],
    *,
    max_pixels: int,
    threads: int = 1,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> list[RecognitionOutcome | PhotoError]:
    """Decode each fetched photo (on ``threads`` threads), then recognise every decodable one in ONE recognizer
    call (a GPU's batch).

    A photo that failed to fetch or decode keeps its error (:data:`PhotoError`) in its place and never fails the
    others; only the recognizer call itself can fail the batch, as it is one call for all. Each outcome
    records ``meta["batch_size"]`` (photos in that call) and, besides its own fetch and decode times, the call's
    time shared out per photo (``recognize``) and in full (``recognize_batch``).
    """
    items = list(zip(refs, fetched, strict=True))
    decoded = _map(lambda item: _decode(recognizer, item[0], item[1], max_pixels, max_decode_bytes), items, threads)
    return _recognize_decoded(recognizer, decoded)


def recognize_objects(
    client: Minio,
    recognizer: PhotoRecognizer,
    refs: Sequence[PhotoRef],
    *,
    max_bytes: int,
    max_pixels: int,
    threads: int = 1,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> list[RecognitionOutcome | PhotoError]:
    """Fetch, decode and recognise several photos with one recognizer call; per photo its outcome or its error
    (:data:`PhotoError`). Each photo is fetched and decoded on one of ``threads`` threads, so a GPU worker's
    batch is read and decoded on several cores at once. See :func:`recognize_fetched`."""

    def fetch_and_decode(ref: PhotoRef) -> Decoded | PhotoError:
        try:
            item: FetchedPhoto | PhotoError = fetch_photo(client, ref, max_bytes=max_bytes)
        except Exception as exc:  # kept in its place: one photo never fails the others
            item = exc
        return _decode(recognizer, ref, item, max_pixels, max_decode_bytes)

    return _recognize_decoded(recognizer, _map(fetch_and_decode, list(refs), threads))


def recognize_object(
    client: Minio,
    recognizer: PhotoRecognizer,
    ref: PhotoRef,
    *,
    max_bytes: int,
    max_pixels: int,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> RecognitionOutcome:
    """Fetch, decode and recognise one photo (a batch of one). Undecodable or missing objects raise
    PermanentError, an unreachable store TransientError; anything else unexpected is raised as it came."""
    [result] = recognize_objects(
        client, recognizer, [ref], max_bytes=max_bytes, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes
    )
    if isinstance(result, Exception):
        raise result
    return result


@dataclass(frozen=True)
class Decoded:
    """A photo ready for the recognizer and its fetch and decode times."""

    photo: DecodedPhoto
    timings_ms: dict[str, float]


T = TypeVar("T")


R = TypeVar("R")


def _map(fn: Callable[[T], R], items: list[T], threads: int) -> list[R]:
    """``fn`` over ``items`` in order, on up to ``threads`` threads (none started for one item or one thread)."""
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="decode") as pool:
        return list(pool.map(fn, items))


def _decode(
    recognizer: PhotoRecognizer,
    ref: PhotoRef,
    item: FetchedPhoto | PhotoError,
    max_pixels: int,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> Decoded | PhotoError:
    """One fetched photo decoded for the recognizer, or the error it ends in (never raised)."""
    if isinstance(item, Exception):
        return item
    t0 = time.perf_counter()
    try:
        photo = decode_photo(
            item.data,
            min_side=recognizer.min_side,
            fit=recognizer.fit,
            max_pixels=max_pixels,
            max_decode_bytes=max_decode_bytes,
        )
    except ImageDecodeError as exc:
        error = PermanentError(exc.reason, f"s3://{ref.bucket}/{ref.key}: {exc}")
        error.__cause__ = exc
        return error
    except Exception as exc:  # a fault of this photo alone: the caller decides
        return exc
    return Decoded(photo, {"fetch": item.fetch_ms, "decode": (time.perf_counter() - t0) * 1e3})


def _recognize_decoded(
    recognizer: PhotoRecognizer, items: Sequence[Decoded | PhotoError]
) -> list[RecognitionOutcome | PhotoError]:
    """One recognizer call for every decoded photo; errors stay in their places."""
    results: list[RecognitionOutcome | PhotoError] = list(items)  # type: ignore[arg-type]
    decoded = [(i, item) for i, item in enumerate(items) if isinstance(item, Decoded)]
    if not decoded:
        return results
    photos = [item.photo for _, item in decoded]
    t0 = time.perf_counter()
    if isinstance(recognizer, TagsScenes):
        answers = recognizer.recognize_photos_with_scenes(photos)
    else:
        answers = [(matches, {}) for matches in recognizer.recognize_photos(photos)]
    batch_ms = (time.perf_counter() - t0) * 1e3
    n = len(decoded)
    for (i, item), (matches, scenes) in zip(decoded, answers, strict=True):
        results[i] = RecognitionOutcome(
            matches=matches,
            meta={**_photo_meta(item.photo), "batch_size": n},
            timings_ms={**item.timings_ms, "recognize": batch_ms / n, "recognize_batch": batch_ms},
            scenes=scenes,
        )
    return results


def _photo_meta(photo: DecodedPhoto) -> dict[str, Any]:
    meta = photo.meta
    return {
        "width": meta.width,
        "height": meta.height,
        "format": meta.format,
        "gps": list(meta.gps) if meta.gps else None,
        "taken_at": meta.taken_at.isoformat() if meta.taken_at else None,
    }
