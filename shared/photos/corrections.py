"""User corrections of albums: reject a photo from a landmark's album, or assign it to one by hand.

A correction is the user's word on one (photo, landmark) pair, the latest one wins, and automatic recognition
never overrides it: :func:`overridden_landmarks` is what ``shared.photos.apply.apply_recognition`` leaves out of the
photo's automatic memberships. Assignments are album entries of source ``manual``, which recognition does not
touch. Rejections are negative examples and assignments positive candidates for training: the correction row
always records that, and the photo joins the gallery (role ``rejected`` / ``candidate``, source ``user``, pointing
at the user's own object, never copied) only when its owner opted in with ``users.share_for_gallery``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import (
    Album,
    AlbumPhoto,
    CorrectionKind,
    GalleryPhoto,
    GalleryRole,
    Landmark,
    Photo,
    PhotoCorrection,
    PhotoStatus,
    Recognition,
    User,
)
from shared.gallery import mining
from shared.photos import albums

MANUAL = "manual"
AUTO = "auto"
GALLERY_SOURCE = mining.USER  # withdrawn with the photo like mined rows (shared.gallery.mining.withdraw)


class CorrectionError(Exception):
    """A correction that cannot be made; the message says why in words a user can act on."""


class PhotoNotFound(CorrectionError):
    pass


class UnknownLandmark(CorrectionError):
    pass


class NotInAlbum(CorrectionError):
    pass


@dataclass(frozen=True)
class CorrectionResult:
    photo_id: uuid.UUID
    kind: CorrectionKind
    landmarks: list[str]  # slugs of the pairs corrected
    gallery_rows: int  # gallery rows written: 0 when the owner has not opted in


def overridden_landmarks(session: Session, photo_id: uuid.UUID) -> set[int]:
    """Landmark ids the user has a word on for this photo: automatic recognition must leave them alone."""
    return set(
        session.execute(select(PhotoCorrection.landmark_id).where(PhotoCorrection.photo_id == photo_id)).scalars()
    )


def memberships(session: Session, photo_id: uuid.UUID) -> dict[int, tuple[str, float | None]]:
    """The photo's albums now: landmark id -> (source, score)."""
    rows = session.execute(
        select(Album.landmark_id, AlbumPhoto.source, AlbumPhoto.score)
        .join(AlbumPhoto, AlbumPhoto.album_id == Album.id)
        .where(AlbumPhoto.photo_id == photo_id)
    ).all()
    return {landmark_id: (source, score) for landmark_id, source, score in rows}


def reject(
    session: Session, photo_id: uuid.UUID, *, landmark: str | None = None, client: str | None = None
) -> CorrectionResult:
    """Take the photo out of ``landmark``'s album (default: every album it is in) and keep it out for good."""
    photo = _locked_photo(session, photo_id)
    current = memberships(session, photo_id)
    if landmark is not None:
        targets = {_landmark_id(session, landmark, active_only=False): landmark}
    else:
        slugs = dict(session.execute(select(Landmark.id, Landmark.slug).where(Landmark.id.in_(current))).all())
        targets = {landmark_id: slugs[landmark_id] for landmark_id in current}
        if not targets:
            raise NotInAlbum(f"photo {photo_id} is in no album: name the landmark to reject")
    for landmark_id in targets:
        _record(session, photo_id, landmark_id, CorrectionKind.reject, client)
    for source in (AUTO, MANUAL):
        kept = {lm: score for lm, (src, score) in current.items() if src == source and lm not in targets}
        if len(kept) != sum(1 for src, _ in current.values() if src == source):
            albums.set_photo_landmarks(session, photo_id, photo.owner_id, kept, source=source)
    written = _to_gallery(session, photo, list(targets), GalleryRole.rejected)
    return CorrectionResult(photo_id, CorrectionKind.reject, sorted(targets.values()), written)


def assign(session: Session, photo_id: uuid.UUID, landmark: str, *, client: str | None = None) -> CorrectionResult:
    """Put the photo in ``landmark``'s album by hand; recognition will neither remove nor re-add it."""
    photo = _locked_photo(session, photo_id)
    landmark_id = _landmark_id(session, landmark, active_only=True)
    _record(session, photo_id, landmark_id, CorrectionKind.assign, client)
    current = memberships(session, photo_id)
    manual: dict[int, float | None] = {lm: score for lm, (src, score) in current.items() if src == MANUAL}
    if landmark_id not in manual:
        manual[landmark_id] = (
            current[landmark_id][1] if landmark_id in current else _model_score(session, photo, landmark_id)
        )
        albums.set_photo_landmarks(session, photo_id, photo.owner_id, manual, source=MANUAL)
    written = _to_gallery(session, photo, [landmark_id], GalleryRole.candidate)
    return CorrectionResult(photo_id, CorrectionKind.assign, [landmark], written)


def corrections_of(session: Session, photo_id: uuid.UUID) -> list[tuple[str, CorrectionKind]]:
    """(landmark slug, kind) of the photo's corrections, by slug."""
    rows = session.execute(
        select(Landmark.slug, PhotoCorrection.kind)
        .join(Landmark, Landmark.id == PhotoCorrection.landmark_id)
        .where(PhotoCorrection.photo_id == photo_id)
        .order_by(Landmark.slug)
    ).all()
    return [(slug, kind) for slug, kind in rows]


def forget(session: Session, photo_id: uuid.UUID) -> int:
    """Drop the photo's corrections (its object was overwritten with new content); returns how many."""
    result = session.execute(delete(PhotoCorrection).where(PhotoCorrection.photo_id == photo_id))
    return result.rowcount or 0


def _locked_photo(session: Session, photo_id: uuid.UUID) -> Photo:
    """The photo, locked like ``apply_recognition`` locks it, so a correction and a recognition serialise."""
    photo = session.get(Photo, photo_id, with_for_update=True)
    if photo is None or photo.status == PhotoStatus.deleted or photo.owner_id is None:
        raise PhotoNotFound(f"no photo {photo_id}")
    return photo


def _landmark_id(session: Session, slug: str, *, active_only: bool) -> int:
    query = select(Landmark.id).where(Landmark.slug == slug)
    if active_only:
        query = query.where(Landmark.active.is_(True))
    landmark_id = session.execute(query).scalar_one_or_none()
    if landmark_id is None:
        raise UnknownLandmark(f"no landmark {slug!r}")
    return landmark_id


def _record(session: Session, photo_id: uuid.UUID, landmark_id: int, kind: CorrectionKind, client: str | None) -> None:
    session.execute(
        insert(PhotoCorrection)
        .values(photo_id=photo_id, landmark_id=landmark_id, kind=kind, client=client)
        .on_conflict_do_update(
            index_elements=["photo_id", "landmark_id"],
            set_={"kind": kind, "client": client, "created_at": func.now()},
        )
    )


def _model_score(session: Session, photo: Photo, landmark_id: int) -> float | None:
    """What the photo's current model version scored for the landmark, if it named it at all."""
    if photo.model_version_id is None:
        return None
    return session.execute(
        select(func.max(Recognition.score)).where(
            Recognition.photo_id == photo.id,
            Recognition.model_version_id == photo.model_version_id,
            Recognition.landmark_id == landmark_id,
        )
    ).scalar_one_or_none()


def _to_gallery(session: Session, photo: Photo, landmark_ids: list[int], role: GalleryRole) -> int:
    """Gallery rows for the owner's object under each landmark, only with the owner's consent.

    A rejection always wins; an assignment turns a rejected row back into a candidate but never demotes a row
    that cleaning has already promoted.
    """
    shares = session.execute(select(User.share_for_gallery).where(User.id == photo.owner_id)).scalar_one()
    if not shares:
        return 0
    for landmark_id in landmark_ids:
        stmt = insert(GalleryPhoto).values(
            landmark_id=landmark_id,
            bucket=photo.bucket,
            key=photo.key,
            role=role,
            source=GALLERY_SOURCE,
            photo_id=photo.id,
        )
        update = {"role": role, "photo_id": photo.id}
        where = None if role is GalleryRole.rejected else GalleryPhoto.role == GalleryRole.rejected
        session.execute(
            stmt.on_conflict_do_update(index_elements=["landmark_id", "bucket", "key"], set_=update, where=where)
        )
    return len(landmark_ids)
