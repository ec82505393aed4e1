"""The upload pipeline's steps, free of Celery: claim a photo, recognise its object, apply the result.

``recognize_object`` runs on the recognize workers (fetch, decode, embed, decide); ``apply_recognition``
runs on the albums workers: recognitions, scene tags, photo metadata and album membership in one transaction.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from minio import Minio
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shared import albums, corrections
from shared.db.models import Landmark, Photo, PhotoStatus, Recognition, RecognitionMethod
from shared.errors import PermanentError
from shared.failures import resolve_failures
from shared.imaging import DecodedPhoto, ImageDecodeError, decode_photo
from shared.scenes.store import set_scene_tags
from shared.storage import ObjectMissing, read_object


@dataclass(frozen=True)
class PhotoRef:
    photo_id: uuid.UUID
    bucket: str
    key: str
    etag: str | None


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


def claim_photo(session: Session, photo_id: uuid.UUID) -> PhotoRef | None:
    """Mark the photo processing; None when there is nothing to do (deleted, failed for good, unknown)."""
    photo = session.get(Photo, photo_id, with_for_update=True)
    if photo is None or photo.status in (PhotoStatus.deleted, PhotoStatus.failed) or photo.owner_id is None:
        return None
    photo.status = PhotoStatus.processing
    return PhotoRef(photo.id, photo.bucket, photo.key, photo.etag)


def recognize_object(
    client: Minio, recognizer: PhotoRecognizer, ref: PhotoRef, *, max_bytes: int, max_pixels: int
) -> RecognitionOutcome:
    """Fetch, decode and recognise one photo. Undecodable or missing objects raise PermanentError."""
    t0 = time.perf_counter()
    try:
        data = read_object(client, ref.bucket, ref.key, max_bytes=max_bytes)
    except ObjectMissing as exc:
        raise PermanentError("object_missing", str(exc)) from exc
    except ValueError as exc:
        raise PermanentError("too_large", str(exc)) from exc
    t1 = time.perf_counter()
    try:
        decoded = decode_photo(data, min_side=recognizer.min_side, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise PermanentError(exc.reason, f"s3://{ref.bucket}/{ref.key}: {exc}") from exc
    t2 = time.perf_counter()
    scenes: dict[str, float] = {}
    if isinstance(recognizer, TagsScenes):
        matches, scenes = recognizer.recognize_photos_with_scenes([decoded])[0]
    else:
        matches = recognizer.recognize_photos([decoded])[0]
    t3 = time.perf_counter()
    meta = decoded.meta
    return RecognitionOutcome(
        matches=matches,
        meta={
            "width": meta.width,
            "height": meta.height,
            "format": meta.format,
            "gps": list(meta.gps) if meta.gps else None,
            "taken_at": meta.taken_at.isoformat() if meta.taken_at else None,
        },
        timings_ms={"fetch": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3, "recognize": (t3 - t2) * 1e3},
        scenes=scenes,
    )


def apply_recognition(
    session: Session, photo_id: uuid.UUID, etag: str | None, model_version_id: int, outcome: dict[str, Any]
) -> str:
    """Write the outcome of one model version for one photo; replaying it changes nothing.

    Returns ``applied`` or why it was skipped (``stale``: the object changed or was deleted meanwhile).
    """
    photo = session.get(Photo, photo_id, with_for_update=True)
    if photo is None or photo.status == PhotoStatus.deleted or photo.etag != etag:
        return "stale"
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


def _best_score(matches: list[LandmarkMatch]) -> float:
    return max((m.score for m in matches), default=0.0)
