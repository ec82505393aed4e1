"""Mining gallery candidates from uploads, as the thesis built its dataset: a user's photo taken within a
landmark's radius becomes a ``candidate`` of that landmark, and counts only once cleaning accepts it.

Privacy: only photos of owners who opted in (``users.share_for_gallery``) are mined, and the gallery row points
at the user's own object (bucket/key, ``photo_id``): nothing is copied into the gallery bucket. Rows made from a
user's photo, mined here or written by the user's corrections (``shared.photos.corrections``), are withdrawn when the
photo is deleted or overwritten or its owner stops sharing (the row goes; the object is never touched).
Whether to mine at all is the caller's setting (``gallery.mine_uploads``, default off).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import ColumnElement, and_, delete, exists, not_, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import GalleryPhoto, GalleryRole, Landmark, Photo, PhotoStatus, User
from shared.recognition.geo import haversine_km

MINED = "mined"  # gallery_photos.source of mined rows
USER = "user"  # gallery_photos.source of rows from a user's corrections (shared.photos.corrections)
FROM_UPLOADS = (MINED, USER)  # rows pointing at a user's photo: they stay only while it is live and shared
KM_PER_DEGREE = 111.2


@dataclass
class MiningResult:
    photo_id: uuid.UUID
    landmarks: list[str] = field(default_factory=list)  # slugs the photo became a new candidate of
    skipped: str | None = None  # why nothing was mined


def landmarks_within(session: Session, lat: float, lon: float, radius_km: float) -> list[tuple[int, str, float]]:
    """Active landmarks with coordinates within ``radius_km`` of (lat, lon): (id, slug, km), nearest first.

    A bounding box narrows the rows in SQL; the great-circle distance decides.
    """
    dlat = radius_km / KM_PER_DEGREE
    cos_lat = math.cos(math.radians(lat))
    query = select(Landmark.id, Landmark.slug, Landmark.lat, Landmark.lon).where(
        Landmark.active.is_(True), Landmark.lat.between(lat - dlat, lat + dlat), Landmark.lon.is_not(None)
    )
    dlon = radius_km / (KM_PER_DEGREE * cos_lat) if cos_lat > 1e-6 else 360.0
    if lon - dlon > -180.0 and lon + dlon < 180.0:  # across the antimeridian the distance alone decides
        query = query.where(Landmark.lon.between(lon - dlon, lon + dlon))
    rows = session.execute(query).all()
    if not rows:
        return []
    km = haversine_km(lat, lon, np.array([r.lat for r in rows]), np.array([r.lon for r in rows]))
    near = [(r.id, r.slug, float(d)) for r, d in zip(rows, km, strict=True) if d <= radius_km]
    return sorted(near, key=lambda t: t[2])


def mine_photo(session: Session, photo_id: uuid.UUID, *, radius_km: float) -> MiningResult:
    """Make the photo a candidate of every landmark within ``radius_km`` of its GPS; replaying changes nothing.

    Call it after the photo's recognition was applied (its GPS is then known), in the same transaction.
    """
    result = MiningResult(photo_id)
    photo = session.get(Photo, photo_id)
    if photo is None or photo.status == PhotoStatus.deleted:
        result.skipped = "no such photo"
    elif photo.owner is None or not photo.owner.share_for_gallery:
        result.skipped = "owner does not share photos for the gallery"
    elif photo.lat is None or photo.lon is None:
        result.skipped = "no GPS"
    if result.skipped:
        return result
    assert photo is not None and photo.lat is not None and photo.lon is not None
    for landmark_id, slug, _ in landmarks_within(session, photo.lat, photo.lon, radius_km):
        added = session.execute(
            insert(GalleryPhoto)
            .values(
                landmark_id=landmark_id,
                bucket=photo.bucket,
                key=photo.key,
                role=GalleryRole.candidate,
                source=MINED,
                split="train",
                photo_id=photo.id,
            )
            .on_conflict_do_nothing(index_elements=["landmark_id", "bucket", "key"])
            .returning(GalleryPhoto.id)
        ).scalar_one_or_none()
        if added is not None:
            result.landmarks.append(slug)
    if not result.landmarks:
        result.skipped = "no new landmark within the radius"
    return result


def may_stay() -> ColumnElement[bool]:
    """SQL condition on gallery_photos: not from an upload, or from a live photo whose owner still shares."""
    sharing = (
        select(Photo.id)
        .join(User, User.id == Photo.owner_id)
        .where(
            Photo.id == GalleryPhoto.photo_id,
            Photo.status != PhotoStatus.deleted,
            User.share_for_gallery.is_(True),
        )
    )
    return or_(GalleryPhoto.source.not_in(FROM_UPLOADS), and_(GalleryPhoto.photo_id.is_not(None), exists(sharing)))


def withdraw(session: Session, *, photo_id: uuid.UUID | None = None, owner_id: int | None = None) -> int:
    """Remove the rows made from uploads (mined or from corrections) of one photo, one owner's photos, or (no
    argument) all that may no longer stay.

    For a photo deleted or overwritten and for an owner who turns sharing off; cleaning runs the sweep too.
    Returns rows removed.
    """
    query = delete(GalleryPhoto).where(GalleryPhoto.source.in_(FROM_UPLOADS))
    if photo_id is not None:
        query = query.where(GalleryPhoto.photo_id == photo_id)
    elif owner_id is not None:
        query = query.where(GalleryPhoto.photo_id.in_(select(Photo.id).where(Photo.owner_id == owner_id)))
    else:
        query = query.where(not_(may_stay()))
    return session.execute(query.execution_options(synchronize_session=False)).rowcount or 0


def set_sharing(session: Session, user: str, *, shares: bool) -> int:
    """Turn the user's ``share_for_gallery`` on or off; off withdraws the rows of their photos at once (returned)."""
    owner = session.execute(select(User).where(User.name == user).with_for_update()).scalar_one_or_none()
    if owner is None:
        raise LookupError(f"no user {user!r}")
    owner.share_for_gallery = shares
    session.flush()
    return 0 if shares else withdraw(session, owner_id=owner.id)
