"""Album membership: per owner and landmark; counts and covers are derived from membership, never adjusted.

Every change locks the affected album rows (in id order, so concurrent writers cannot deadlock) and recomputes
``photo_count`` and the cover from ``album_photos``: a redelivered or duplicated task cannot drift the count.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import Album, AlbumPhoto, City, Landmark, Photo, PhotoStatus, User


def _ensure_album(session: Session, owner_id: int, landmark_id: int) -> int:
    session.execute(
        insert(Album)
        .values(owner_id=owner_id, landmark_id=landmark_id, photo_count=0)
        .on_conflict_do_nothing(index_elements=["owner_id", "landmark_id"])
    )
    return session.execute(
        select(Album.id).where(Album.owner_id == owner_id, Album.landmark_id == landmark_id)
    ).scalar_one()


def _lock(session: Session, album_ids: set[int]) -> set[int]:
    """Lock the albums (in id order); returns those that still exist, which no one can delete until commit."""
    if not album_ids:
        return set()
    query = select(Album.id).where(Album.id.in_(sorted(album_ids))).order_by(Album.id).with_for_update()
    return set(session.execute(query).scalars())


def _ensure_locked(session: Session, owner_id: int, landmark_ids: set[int], others: set[int]) -> dict[int, int]:
    """Landmark id -> album id, every album locked (with ``others``) and present.

    An album found by :func:`_ensure_album` may be deleted by a concurrent task taking its last photo out before
    it is locked here; such an album is created again and locked, so adding a photo never meets a foreign-key
    error. Once locked it cannot be deleted until this transaction ends.
    """
    wanted = {lm: _ensure_album(session, owner_id, lm) for lm in landmark_ids}
    locked = _lock(session, set(wanted.values()) | others)
    while missing := [lm for lm, album_id in wanted.items() if album_id not in locked]:
        for lm in missing:
            wanted[lm] = _ensure_album(session, owner_id, lm)
        locked |= _lock(session, {wanted[lm] for lm in missing})
    return wanted


def _refresh(session: Session, album_id: int) -> None:
    """Recompute count and cover (best-scored, then newest photo); an album left empty is removed."""
    count = session.execute(
        select(func.count()).select_from(AlbumPhoto).where(AlbumPhoto.album_id == album_id)
    ).scalar_one()
    if count == 0:
        session.execute(delete(Album).where(Album.id == album_id))
        return
    cover = session.execute(
        select(AlbumPhoto.photo_id)
        .where(AlbumPhoto.album_id == album_id)
        .order_by(AlbumPhoto.score.desc().nulls_last(), AlbumPhoto.added_at.desc())
        .limit(1)
    ).scalar_one()
    album = session.get(Album, album_id)
    assert album is not None
    album.photo_count = count
    album.cover_photo_id = cover


def set_photo_landmarks(
    session: Session, photo_id: uuid.UUID, owner_id: int, scores: dict[int, float | None], *, source: str = "auto"
) -> None:
    """Make the photo's ``source`` memberships exactly the landmarks in ``scores`` (landmark id -> score)."""
    current = dict(
        session.execute(
            select(Album.landmark_id, Album.id)
            .join(AlbumPhoto, AlbumPhoto.album_id == Album.id)
            .where(AlbumPhoto.photo_id == photo_id, AlbumPhoto.source == source)
        ).all()
    )
    removed = {album_id for lm, album_id in current.items() if lm not in scores}
    kept = {album_id for lm, album_id in current.items() if lm in scores}
    wanted = _ensure_locked(session, owner_id, {lm for lm in scores if lm not in current}, removed | kept)
    if removed:
        session.execute(delete(AlbumPhoto).where(AlbumPhoto.photo_id == photo_id, AlbumPhoto.album_id.in_(removed)))
    for landmark_id, album_id in wanted.items():
        session.execute(
            insert(AlbumPhoto)
            .values(album_id=album_id, photo_id=photo_id, score=scores[landmark_id], source=source)
            .on_conflict_do_update(
                index_elements=["album_id", "photo_id"], set_={"score": scores[landmark_id], "source": source}
            )
        )
    for landmark_id, album_id in current.items():
        if landmark_id in scores:
            session.execute(
                AlbumPhoto.__table__.update()
                .where(AlbumPhoto.album_id == album_id, AlbumPhoto.photo_id == photo_id)
                .values(score=scores[landmark_id])
            )
    for album_id in sorted(set(wanted.values()) | removed | kept):
        _refresh(session, album_id)


def remove_photo(session: Session, photo_id: uuid.UUID) -> int:
    """Take the photo out of every album (deleted or overwritten object); returns how many it left."""
    album_ids = set(session.execute(select(AlbumPhoto.album_id).where(AlbumPhoto.photo_id == photo_id)).scalars())
    _lock(session, album_ids)
    session.execute(delete(AlbumPhoto).where(AlbumPhoto.photo_id == photo_id))
    for album_id in sorted(album_ids):
        _refresh(session, album_id)
    return len(album_ids)


@dataclass
class AlbumPhotoView:
    photo_id: str
    bucket: str
    key: str
    score: float | None
    source: str


@dataclass
class AlbumView:
    landmark_slug: str
    landmark_name: str
    city: str
    country: str
    lat: float | None
    lon: float | None
    photo_count: int
    cover_photo_id: str | None
    photos: list[AlbumPhotoView] = field(default_factory=list)


def list_albums(session: Session, user_name: str, *, with_photos: bool = True) -> dict[str, list[AlbumView]]:
    """The user's albums grouped by city ("City, Country"), cities and albums sorted by name."""
    rows = session.execute(
        select(Album, Landmark, City)
        .join(User, User.id == Album.owner_id)
        .join(Landmark, Landmark.id == Album.landmark_id)
        .outerjoin(City, City.id == Landmark.city_id)
        .where(User.name == user_name)
        .order_by(City.name, Landmark.name)
    ).all()
    grouped: dict[str, list[AlbumView]] = {}
    for album, landmark, city in rows:
        view = AlbumView(
            landmark_slug=landmark.slug,
            landmark_name=landmark.name,
            city=city.name if city else "",
            country=landmark.country,
            lat=landmark.lat,
            lon=landmark.lon,
            photo_count=album.photo_count,
            cover_photo_id=str(album.cover_photo_id) if album.cover_photo_id else None,
        )
        if with_photos:
            members = session.execute(
                select(AlbumPhoto, Photo)
                .join(Photo, Photo.id == AlbumPhoto.photo_id)
                .where(AlbumPhoto.album_id == album.id, Photo.status != PhotoStatus.deleted)
                .order_by(AlbumPhoto.added_at)
            ).all()
            view.photos = [AlbumPhotoView(str(p.id), p.bucket, p.key, ap.score, ap.source) for ap, p in members]
        label = ", ".join(x for x in (view.city, view.country) if x) or "Unknown city"
        grouped.setdefault(label, []).append(view)
    return grouped


@dataclass
class PhotoPlacement:
    """Where one uploaded object ended up: its status, the albums it joined (name, city), or why it failed."""

    key: str
    status: str  # a PhotoStatus value, or "missing" while the object has no photo row yet
    albums: list[tuple[str, str]] = field(default_factory=list)  # (landmark name, "City, Country")
    error: str | None = None


def place_photos(session: Session, bucket: str, keys: list[str]) -> dict[str, PhotoPlacement]:
    """Each key's placement, in the order given: what `landmarks upload --wait` tells the uploader."""
    photos = {
        p.key: p for p in session.execute(select(Photo).where(Photo.bucket == bucket, Photo.key.in_(keys))).scalars()
    }
    placed = {k: PhotoPlacement(k, photos[k].status.value if k in photos else "missing") for k in keys}
    for key, photo in photos.items():
        placed[key].error = photo.error if photo.status == PhotoStatus.failed else None
    ids = {p.id: p.key for p in photos.values()}
    if ids:
        rows = session.execute(
            select(AlbumPhoto.photo_id, Landmark.name, Landmark.country, City.name)
            .join(Album, Album.id == AlbumPhoto.album_id)
            .join(Landmark, Landmark.id == Album.landmark_id)
            .outerjoin(City, City.id == Landmark.city_id)
            .where(AlbumPhoto.photo_id.in_(list(ids)))
            .order_by(AlbumPhoto.score.desc().nulls_last(), Landmark.name)
        ).all()
        for photo_id, name, country, city in rows:
            placed[ids[photo_id]].albums.append((name, ", ".join(x for x in (city, country) if x) or "Unknown city"))
    return placed
