"""Scene tags in the database: replaced per (photo, model version) by ``apply_recognition``; scene albums read
the tags of the version that last processed each photo (the one its landmark albums show)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.db.models import Photo, PhotoStatus, SceneTag, User
from shared.scenes.mapping import LABEL_TITLES


def set_scene_tags(session: Session, photo_id: uuid.UUID, model_version_id: int, tags: dict[str, float]) -> None:
    """Replace the photo's tags from this model version (a replay writes the same rows again)."""
    session.execute(
        delete(SceneTag).where(SceneTag.photo_id == photo_id, SceneTag.model_version_id == model_version_id)
    )
    session.add_all(
        SceneTag(photo_id=photo_id, model_version_id=model_version_id, label=label, score=float(score))
        for label, score in sorted(tags.items())
    )


@dataclass
class ScenePhotoView:
    photo_id: str
    bucket: str
    key: str
    score: float


@dataclass
class SceneAlbumView:
    label: str
    title: str
    photo_count: int = 0
    photos: list[ScenePhotoView] = field(default_factory=list)


class UnknownUserError(LookupError):
    """No user of that name."""


def list_scene_albums(session: Session, user_name: str) -> list[SceneAlbumView]:
    """The user's scene albums (label -> photos, best score first), labels sorted; each photo counts with the
    tags of its current model version only."""
    if session.scalar(select(User.id).where(User.name == user_name)) is None:
        raise UnknownUserError(f"no user named {user_name!r}")
    rows = session.execute(
        select(SceneTag.label, SceneTag.score, Photo.id, Photo.bucket, Photo.key)
        .join(Photo, Photo.id == SceneTag.photo_id)
        .join(User, User.id == Photo.owner_id)
        .where(
            User.name == user_name,
            Photo.status == PhotoStatus.done,
            SceneTag.model_version_id == Photo.model_version_id,
        )
        .order_by(SceneTag.label, SceneTag.score.desc(), Photo.key)
    ).all()
    albums: dict[str, SceneAlbumView] = {}
    for label, score, photo_id, bucket, key in rows:
        album = albums.setdefault(label, SceneAlbumView(label, LABEL_TITLES.get(label, label)))
        album.photos.append(ScenePhotoView(str(photo_id), bucket, key, round(float(score), 4)))
        album.photo_count += 1
    return list(albums.values())
