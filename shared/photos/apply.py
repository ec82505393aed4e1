"""The apply step, on the albums workers: recognitions, scene tags, photo metadata and album membership of
one photo in one transaction, idempotent under redelivery and never undoing a user's correction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shared.db.models import Landmark, ModelVersion, Photo, PhotoStatus, Recognition, RecognitionMethod
from shared.photos import albums, corrections
from shared.photos.failures import resolve_failures
from shared.recognition.outcome import LandmarkMatch
from shared.scenes.store import set_scene_tags


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
