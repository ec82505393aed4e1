"""What the API reads: a user's albums by city, one album's photos a page at a time, one photo in full.

Album pages use keyset pagination on (added_at, photo_id), newest first: a cursor stays valid while photos
are added or removed, and no page costs more than the page itself.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from shared.db.models import (
    Album,
    AlbumPhoto,
    City,
    Landmark,
    ModelVersion,
    Photo,
    PhotoStatus,
    Recognition,
    User,
)
from shared.photos import albums, corrections


class InvalidCursor(ValueError):
    pass


@dataclass
class CityGroup:
    city: str
    country: str
    albums: list[albums.AlbumView]


@dataclass
class AlbumInfo:
    slug: str
    name: str
    city: str
    country: str
    lat: float | None
    lon: float | None
    photo_count: int
    cover_photo_id: uuid.UUID | None


@dataclass
class AlbumEntry:
    photo: Photo
    score: float | None
    source: str
    added_at: datetime
    model_version: str | None


@dataclass
class AlbumPage:
    album: AlbumInfo
    entries: list[AlbumEntry]
    next_cursor: str | None


@dataclass
class RecognitionRow:
    landmark: str | None
    landmark_name: str | None
    score: float
    method: str
    verified: bool
    rank: int
    model_version: str


@dataclass
class Membership:
    landmark: str
    name: str
    source: str
    score: float | None


@dataclass
class PhotoDetail:
    photo: Photo
    owner: str | None
    model_version: str | None
    recognitions: list[RecognitionRow] = field(default_factory=list)
    albums: list[Membership] = field(default_factory=list)
    corrections: list[tuple[str, str]] = field(default_factory=list)
    scene_tags: list[str] = field(default_factory=list)  # no scene tagging yet: always empty


@dataclass(frozen=True)
class UserSummary:
    name: str
    albums: int
    photos: int  # deleted ones not counted


def user_summaries(session: Session, names: Collection[str] | None) -> list[UserSummary]:
    """Album and photo counts of the users named (None: every user), by name; a named user the database does
    not know yet (no photo uploaded) is listed with zeros, so a new token sees whom it may read."""
    album_counts = select(Album.owner_id, func.count().label("n")).group_by(Album.owner_id).subquery()
    photo_counts = (
        select(Photo.owner_id, func.count().label("n"))
        .where(Photo.status != PhotoStatus.deleted)
        .group_by(Photo.owner_id)
        .subquery()
    )
    query = (
        select(User.name, func.coalesce(album_counts.c.n, 0), func.coalesce(photo_counts.c.n, 0))
        .outerjoin(album_counts, album_counts.c.owner_id == User.id)
        .outerjoin(photo_counts, photo_counts.c.owner_id == User.id)
    )
    if names is not None:
        query = query.where(User.name.in_(list(names)))
    found = {name: UserSummary(name, albums, photos) for name, albums, photos in session.execute(query).all()}
    for name in names or ():
        found.setdefault(name, UserSummary(name, 0, 0))
    return sorted(found.values(), key=lambda u: u.name)


def albums_by_city(session: Session, user: str) -> list[CityGroup]:
    """The user's albums grouped by city (``shared.photos.albums.list_albums``), without their photos."""
    groups = []
    for views in albums.list_albums(session, user, with_photos=False).values():
        groups.append(CityGroup(views[0].city, views[0].country, views))
    return groups


def cover_objects(session: Session, photo_ids: list[str | uuid.UUID | None]) -> dict[uuid.UUID, tuple[str, str]]:
    """(bucket, key) of each cover photo, in one query."""
    ids = {uuid.UUID(str(pid)) for pid in photo_ids if pid is not None}
    if not ids:
        return {}
    rows = session.execute(select(Photo.id, Photo.bucket, Photo.key).where(Photo.id.in_(ids))).all()
    return {pid: (bucket, key) for pid, bucket, key in rows}


def encode_cursor(added_at: datetime, photo_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{added_at.isoformat()}|{photo_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, photo_id = raw.split("|")
        added_at = datetime.fromisoformat(stamp)
        if added_at.tzinfo is None:
            raise ValueError("naive time")
        return added_at, uuid.UUID(photo_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor(f"not a cursor of this API: {cursor!r}") from exc


def album_page(session: Session, user: str, slug: str, *, limit: int, cursor: str | None = None) -> AlbumPage | None:
    """One page of the user's album for the landmark ``slug``, or None when the user has no such album."""
    after = decode_cursor(cursor) if cursor else None
    row = session.execute(
        select(Album, Landmark, City)
        .join(User, User.id == Album.owner_id)
        .join(Landmark, Landmark.id == Album.landmark_id)
        .outerjoin(City, City.id == Landmark.city_id)
        .where(User.name == user, Landmark.slug == slug)
    ).one_or_none()
    if row is None:
        return None
    album, landmark, city = row
    info = AlbumInfo(
        landmark.slug,
        landmark.name,
        city.name if city else "",
        landmark.country,
        landmark.lat,
        landmark.lon,
        album.photo_count,
        album.cover_photo_id,
    )
    query = (
        select(AlbumPhoto, Photo, ModelVersion.version)
        .join(Photo, Photo.id == AlbumPhoto.photo_id)
        .outerjoin(ModelVersion, ModelVersion.id == Photo.model_version_id)
        .where(AlbumPhoto.album_id == album.id, Photo.status != PhotoStatus.deleted)
        .order_by(AlbumPhoto.added_at.desc(), AlbumPhoto.photo_id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(tuple_(AlbumPhoto.added_at, AlbumPhoto.photo_id) < tuple_(*after))
    rows = session.execute(query).all()
    entries = [AlbumEntry(p, ap.score, ap.source, ap.added_at, version) for ap, p, version in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = entries[-1]
        next_cursor = encode_cursor(last.added_at, last.photo.id)
    return AlbumPage(info, entries, next_cursor)


def photo_owner(session: Session, photo_id: uuid.UUID) -> tuple[Photo, str | None] | None:
    """The photo and its owner's name, or None when there is no such photo (deleted ones included)."""
    row = session.execute(
        select(Photo, User.name).outerjoin(User, User.id == Photo.owner_id).where(Photo.id == photo_id)
    ).one_or_none()
    if row is None or row[0].status == PhotoStatus.deleted:
        return None
    return row[0], row[1]


def photo_detail(session: Session, photo: Photo, owner: str | None) -> PhotoDetail:
    """Status, every model version's recognitions (newest version first), albums and the user's corrections."""
    recognitions = session.execute(
        select(Recognition, Landmark, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == Recognition.model_version_id)
        .outerjoin(Landmark, Landmark.id == Recognition.landmark_id)
        .where(Recognition.photo_id == photo.id)
        .order_by(Recognition.model_version_id.desc(), Recognition.rank)
    ).all()
    memberships = session.execute(
        select(Landmark.slug, Landmark.name, AlbumPhoto.source, AlbumPhoto.score)
        .join(Album, Album.landmark_id == Landmark.id)
        .join(AlbumPhoto, AlbumPhoto.album_id == Album.id)
        .where(AlbumPhoto.photo_id == photo.id)
        .order_by(Landmark.name)
    ).all()
    version = None
    if photo.model_version_id is not None:
        version = session.get(ModelVersion, photo.model_version_id).version  # type: ignore[union-attr]
    return PhotoDetail(
        photo=photo,
        owner=owner,
        model_version=version,
        recognitions=[
            RecognitionRow(
                landmark.slug if landmark else None,
                landmark.name if landmark else None,
                rec.score,
                str(rec.method),
                rec.verified,
                rec.rank,
                mv,
            )
            for rec, landmark, mv in recognitions
        ],
        albums=[Membership(slug, name, source, score) for slug, name, source, score in memberships],
        corrections=[(slug, str(kind)) for slug, kind in corrections.corrections_of(session, photo.id)],
    )
