"""The upload pipeline's steps, free of Celery: claim a photo, recognise its object, apply the result.

``recognize_objects`` runs on the recognize workers: fetch and decode each photo of a micro-batch (on several
threads on a GPU worker), then embed and decide all of them in one call (``recognize_object`` is the batch of
one). ``apply_recognition`` runs on the
albums workers: recognitions, scene tags, photo metadata and album membership in one transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from minio import Minio
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared.db.models import Landmark, ModelVersion, Photo, PhotoStatus, Recognition, RecognitionMethod
from shared.errors import PermanentError
from shared.imaging import DEFAULT_MAX_DECODE_BYTES, DecodedPhoto, ImageDecodeError, decode_photo
from shared.photos import albums, corrections
from shared.photos.failures import record_failure, resolve_failures
from shared.scenes.store import set_scene_tags
from shared.storage import ObjectMissing, read_object


@dataclass(frozen=True)
class PhotoRef:
    photo_id: uuid.UUID
    bucket: str
    key: str
    etag: str | None
    deliveries: int = 0  # runs begun on the photo that never ended: a worker died with it (begin_runs)


@dataclass
class LandmarkMatch:
    """One decision, JSON-serialisable so it travels between queues (landmark by slug, None = no landmark)."""

    landmark: str | None
    score: float
    method: str
    verified: bool = False


@dataclass
class RecognitionOutcome:
    matches: list[LandmarkMatch]
    meta: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)
    scenes: dict[str, float] = field(default_factory=dict)  # scene label -> score (``shared.scenes``)

    def to_json(self) -> dict[str, Any]:
        return {
            "matches": [asdict(m) for m in self.matches],
            "meta": self.meta,
            "timings_ms": self.timings_ms,
            "scenes": self.scenes,
        }


class PhotoRecognizer(Protocol):
    """What the pipeline needs of a loaded model version (see ``shared.recognition``)."""

    version: str
    min_side: int

    def recognize_photos(self, photos: list[DecodedPhoto]) -> list[list[LandmarkMatch]]: ...


@runtime_checkable
class TagsScenes(Protocol):
    """A recognizer that also tags scenes from the same forward pass (``shared.recognition.Recognizer``)."""

    def recognize_photos_with_scenes(
        self, photos: list[DecodedPhoto]
    ) -> list[tuple[list[LandmarkMatch], dict[str, float]]]: ...


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
            item.data, min_side=recognizer.min_side, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes
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


def apply_recognition(
    session: Session, photo_id: uuid.UUID, etag: str | None, model_version_id: int, outcome: dict[str, Any]
) -> str:
    """Write the outcome of one model version for one photo; replaying it changes nothing.

    Returns ``applied`` or why it was skipped (``stale``: the object changed or was deleted meanwhile;
    ``superseded``: the photo already holds the result of a version activated after this one).
    """
    photo = session.get(Photo, photo_id, with_for_update=True)
    if photo is None or photo.status == PhotoStatus.deleted or photo.etag != etag:
        return "stale"
    if _superseded(session, photo.model_version_id, model_version_id):
        return "superseded"
    matches = [LandmarkMatch(**m) for m in outcome["matches"]]
    slugs = {m.landmark for m in matches if m.landmark}
    ids = dict(session.execute(select(Landmark.slug, Landmark.id).where(Landmark.slug.in_(slugs))).all())
    session.execute(
        delete(Recognition).where(Recognition.photo_id == photo_id, Recognition.model_version_id == model_version_id)
    )
    rows = [m for m in matches if m.landmark in ids] or [LandmarkMatch(None, _best_score(matches), "none")]
    for rank, match in enumerate(rows):
        session.add(
            Recognition(
                photo_id=photo_id,
                model_version_id=model_version_id,
                rank=rank,
                landmark_id=ids.get(match.landmark) if match.landmark else None,
                score=match.score,
                method=RecognitionMethod(match.method),
                verified=match.verified,
            )
        )
    set_scene_tags(session, photo_id, model_version_id, outcome.get("scenes") or {})
    meta = outcome.get("meta") or {}
    if meta.get("gps"):
        photo.lat, photo.lon = meta["gps"]
    if meta.get("taken_at"):
        photo.taken_at = datetime.fromisoformat(meta["taken_at"])
    photo.width, photo.height = meta.get("width"), meta.get("height")
    photo.status, photo.error = PhotoStatus.done, None
    photo.model_version_id = model_version_id
    photo.processed_at = func.now()
    resolve_failures(session, photo_id)
    assert photo.owner_id is not None
    # A user's reject or assign of a landmark for this photo outranks every model version.
    overridden = corrections.overridden_landmarks(session, photo_id)
    scores = {ids[m.landmark]: m.score for m in matches if m.landmark in ids and ids[m.landmark] not in overridden}
    albums.set_photo_landmarks(session, photo_id, photo.owner_id, scores)
    return "applied"


def _superseded(session: Session, current_id: int | None, incoming_id: int) -> bool:
    """Whether the photo's current result comes from a version activated later than the incoming one's.

    "Later" is by activation time, not by id, so a rollback (activating an older version again) applies that
    version's results once more, while a worker still running the previous version cannot undo a newer result.
    """
    if current_id is None or current_id == incoming_id:
        return False
    activated = dict(
        session.execute(
            select(ModelVersion.id, ModelVersion.activated_at).where(ModelVersion.id.in_([current_id, incoming_id]))
        ).all()
    )
    current, incoming = activated.get(current_id), activated.get(incoming_id)
    return current is not None and (incoming is None or incoming < current)


def _best_score(matches: list[LandmarkMatch]) -> float:
    return max((m.score for m in matches), default=0.0)
