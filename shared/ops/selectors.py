"""Selecting photos for reprocessing: every selector narrows the set (AND), deleted photos never match.

A photo without an owner cannot be recognised (``claim_photo`` skips it), so it never matches either: it needs
its object re-uploaded with owner metadata, not a reprocess.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session

from shared.db.models import Album, AlbumPhoto, Landmark, ModelVersion, Photo, PhotoStatus, Recognition, User
from shared.versions.registry import active_version


class SelectorError(ValueError):
    """The selection cannot be made (nothing selected, unknown user/landmark/version, no active model)."""


@dataclass(frozen=True)
class PhotoSelector:
    """What ``landmarks reprocess`` selects; ``since``/``until`` bound ``created_at`` as ``[since, until)``."""

    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: PhotoStatus | None = None
    model_older_than: str | None = None
    stale: bool = False
    landmark: str | None = None
    all: bool = False

    def is_empty(self) -> bool:
        narrowing = (self.user, self.since, self.until, self.status, self.model_older_than, self.landmark)
        return not self.all and not self.stale and all(value is None for value in narrowing)


def photo_ids_query(session: Session, selector: PhotoSelector) -> Select[tuple]:
    """``SELECT photos.id`` for the selector, ordered by creation (oldest first); raises SelectorError."""
    if selector.is_empty():
        raise SelectorError("no selector: name photos (--user, --since, --status, --stale, ...) or pass --all")
    if selector.status == PhotoStatus.deleted:
        raise SelectorError("deleted photos are never reprocessed")
    query = select(Photo.id).where(Photo.status != PhotoStatus.deleted, Photo.owner_id.is_not(None))
    if selector.user is not None:
        user_id = session.execute(select(User.id).where(User.name == selector.user)).scalar_one_or_none()
        if user_id is None:
            raise SelectorError(f"no user {selector.user!r}")
        query = query.where(Photo.owner_id == user_id)
    if selector.since is not None:
        query = query.where(Photo.created_at >= selector.since)
    if selector.until is not None:
        query = query.where(Photo.created_at < selector.until)
    if selector.status is not None:
        query = query.where(Photo.status == selector.status)
    if selector.model_older_than is not None:
        version_id = session.execute(
            select(ModelVersion.id).where(ModelVersion.version == selector.model_older_than)
        ).scalar_one_or_none()
        if version_id is None:
            raise SelectorError(f"no model version {selector.model_older_than!r}")
        query = query.where(Photo.model_version_id < version_id)
    if selector.stale:
        active = active_version(session)
        if active is None:
            raise SelectorError("--stale needs an active model version; there is none")
        query = query.where(Photo.model_version_id.is_distinct_from(active.id))
    if selector.landmark is not None:
        landmark_id = session.execute(
            select(Landmark.id).where(Landmark.slug == selector.landmark)
        ).scalar_one_or_none()
        if landmark_id is None:
            raise SelectorError(f"no landmark {selector.landmark!r}")
        in_album = exists().where(
            AlbumPhoto.photo_id == Photo.id, AlbumPhoto.album_id == Album.id, Album.landmark_id == landmark_id
        )
        recognised = exists().where(
            Recognition.photo_id == Photo.id,
            Recognition.model_version_id == Photo.model_version_id,
            Recognition.landmark_id == landmark_id,
        )
        query = query.where(in_album | recognised)
    return query.order_by(Photo.created_at, Photo.id)


def select_photo_ids(session: Session, selector: PhotoSelector) -> list[uuid.UUID]:
    """The ids of the selected photos, oldest first."""
    return list(session.execute(photo_ids_query(session, selector)).scalars())
