"""The landmark gallery: importing landmarks and their photos (objects in the gallery bucket, rows in PostgreSQL),
and the hand-picked reference photos of each landmark.

Re-import is idempotent: objects are keyed by content hash, rows are claimed with INSERT ... ON CONFLICT. A row
flagged ``reference`` promotes an existing photo to a reference (a hand-pick outranks cleaning); otherwise
re-importing leaves a known photo's role alone: it never demotes a reference nor restores a rejected photo.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from minio import Minio
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import City, GalleryPhoto, GalleryRole, Landmark
from shared.gallery.formats import GalleryRow
from shared.gallery.manifest import UNKNOWN_LANDMARK_KIND, EvalRow
from shared.storage import ObjectMissing, put_file, stat_object

NEGATIVES_PREFIX = "_negatives"
UNKNOWN_LANDMARKS_PREFIX = "_unknown_landmarks"


@dataclass
class ImportReport:
    landmarks_created: int = 0
    photos_added: int = 0
    photos_known: int = 0
    negatives_added: int = 0
    unknown_landmarks_added: int = 0
    objects_uploaded: int = 0
    references_set: int = 0
    per_landmark: dict[str, int] = field(default_factory=dict)


def content_key(prefix: str, path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    return f"{prefix}/{digest}{path.suffix.lower() or '.jpg'}"


def upsert_landmark(session: Session, row: EvalRow) -> tuple[int, bool]:
    """The landmark row of a manifest row (and its city); returns (id, created)."""
    assert row.landmark is not None
    existing = session.execute(select(Landmark.id).where(Landmark.slug == row.landmark)).scalar_one_or_none()
    if existing is not None:
        return existing, False
    session.execute(
        insert(City)
        .values(name=row.city or "", country=row.country or "")
        .on_conflict_do_nothing(index_elements=["name", "country"])
    )
    city_id = session.execute(
        select(City.id).where(City.name == (row.city or ""), City.country == (row.country or ""))
    ).scalar_one()
    landmark_id = session.execute(
        insert(Landmark)
        .values(
            slug=row.landmark,
            name=row.name or row.landmark,
            city_id=city_id,
            country=row.country or "",
            lat=row.lat,
            lon=row.lon,
        )
        .on_conflict_do_nothing(index_elements=["slug"])
        .returning(Landmark.id)
    ).scalar_one_or_none()
    if landmark_id is None:  # created concurrently
        return session.execute(select(Landmark.id).where(Landmark.slug == row.landmark)).scalar_one(), False
    return landmark_id, True


def _ensure_object(client: Minio, bucket: str, key: str, path: Path) -> bool:
    try:
        stat_object(client, bucket, key)
        return False
    except ObjectMissing:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        put_file(client, bucket, key, path, content_type=content_type)
        return True


def import_rows(
    session: Session,
    client: Minio,
    bucket: str,
    rows: Sequence[EvalRow],
    *,
    splits: Sequence[str] = ("train",),
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Landmark rows become gallery photos (role ``train``, or ``reference`` for rows flagged so), non-landmark
    rows ``negative`` photos and ``unknown_landmark`` rows (landmarks the gallery does not know, on purpose)
    ``unknown_landmark`` photos."""
    report = ImportReport()
    landmark_ids: dict[str, int] = {}
    for row in rows:
        if progress:
            progress(1)
        if row.split not in splits:
            continue
        if row.is_landmark:
            assert row.landmark is not None
            if row.landmark not in landmark_ids:
                landmark_ids[row.landmark], created = upsert_landmark(session, row)
                report.landmarks_created += int(created)
            landmark_id: int | None = landmark_ids[row.landmark]
            key = content_key(row.landmark, row.path)
            role = GalleryRole.reference if isinstance(row, GalleryRow) and row.reference else GalleryRole.train
            conflict = ["landmark_id", "bucket", "key"]
            where = None
        elif row.kind == UNKNOWN_LANDMARK_KIND:
            landmark_id, key = None, content_key(UNKNOWN_LANDMARKS_PREFIX, row.path)
            role = GalleryRole.unknown_landmark
            conflict, where = ["bucket", "key"], GalleryPhoto.landmark_id.is_(None)
        else:
            landmark_id, key, role = None, content_key(NEGATIVES_PREFIX, row.path), GalleryRole.negative
            conflict, where = ["bucket", "key"], GalleryPhoto.landmark_id.is_(None)
        report.objects_uploaded += int(_ensure_object(client, bucket, key, row.path))
        added = session.execute(
            insert(GalleryPhoto)
            .values(landmark_id=landmark_id, bucket=bucket, key=key, role=role, source="import", split=row.split)
            .on_conflict_do_nothing(index_elements=conflict, index_where=where)
            .returning(GalleryPhoto.id)
        ).scalar_one_or_none()
        if added is None:
            report.photos_known += 1
            if role == GalleryRole.reference:
                report.references_set += _promote(session, landmark_id, bucket, key)  # type: ignore[arg-type]
        elif row.is_landmark:
            report.photos_added += 1
            report.references_set += int(role == GalleryRole.reference)
            report.per_landmark[row.landmark] = report.per_landmark.get(row.landmark, 0) + 1  # type: ignore[index]
        elif role == GalleryRole.unknown_landmark:
            report.unknown_landmarks_added += 1
        else:
            report.negatives_added += 1
    return report


def _promote(session: Session, landmark_id: int, bucket: str, key: str) -> int:
    """Make an existing gallery photo a reference (a hand-pick outranks cleaning); 1 if it changed."""
    changed = session.execute(
        update(GalleryPhoto)
        .where(
            GalleryPhoto.landmark_id == landmark_id,
            GalleryPhoto.bucket == bucket,
            GalleryPhoto.key == key,
            GalleryPhoto.role != GalleryRole.reference,
        )
        .values(role=GalleryRole.reference)
    )
    return changed.rowcount or 0


class UnknownLandmark(LookupError):
    """No landmark has this slug."""


class UnknownGalleryPhoto(LookupError):
    """Neither a local file nor a key of this landmark's gallery photos or of the gallery bucket."""


@dataclass
class ReferenceSet:
    landmark: str
    keys: list[str]
    added: int = 0  # photos that were not references before
    demoted: int = 0  # former references, back to ``train``
    objects_uploaded: int = 0


@dataclass(frozen=True)
class ReferencePhoto:
    bucket: str
    key: str
    source: str
    cleaning_score: float | None


@dataclass
class LandmarkReferences:
    slug: str
    name: str
    photos: list[ReferencePhoto]


def landmark_id_of(session: Session, slug: str) -> int:
    found = session.execute(select(Landmark.id).where(Landmark.slug == slug)).scalar_one_or_none()
    if found is None:
        raise UnknownLandmark(f"no landmark {slug!r} (see `landmarks gallery refs list`)")
    return found


def _reference_row(session: Session, landmark_id: int, bucket: str, key: str) -> tuple[int, bool]:
    """The row of (landmark, object) as a reference, created if missing; returns (id, newly a reference)."""
    row = session.execute(
        select(GalleryPhoto).where(
            GalleryPhoto.landmark_id == landmark_id, GalleryPhoto.bucket == bucket, GalleryPhoto.key == key
        )
    ).scalar_one_or_none()
    if row is None:
        row = GalleryPhoto(landmark_id=landmark_id, bucket=bucket, key=key, role=GalleryRole.reference)
        session.add(row)
        session.flush()
        return row.id, True
    changed = row.role != GalleryRole.reference
    row.role = GalleryRole.reference
    return row.id, changed


def set_references(
    session: Session, client: Minio, bucket: str, slug: str, photos: Sequence[Path | str]
) -> ReferenceSet:
    """Make ``photos`` the landmark's references, and only them (former references go back to ``train``).

    A :class:`~pathlib.Path` is a local file, imported into ``bucket`` if new; a ``str`` is the key of one of the
    landmark's gallery photos (any bucket: mined candidates live in the photos bucket) or of an object in
    ``bucket``. The Mail.ru pipeline used 3-5 references per landmark; the caller warns outside that range.
    """
    if not photos:
        raise ValueError("give at least one reference photo")
    landmark_id = landmark_id_of(session, slug)
    result = ReferenceSet(slug, [])
    chosen: list[int] = []
    for photo in photos:
        if isinstance(photo, Path):
            key = content_key(slug, photo)
            result.objects_uploaded += int(_ensure_object(client, bucket, key, photo))
            where = (bucket, key)
        else:
            known = session.execute(
                select(GalleryPhoto.bucket)
                .where(GalleryPhoto.landmark_id == landmark_id, GalleryPhoto.key == photo)
                .order_by(GalleryPhoto.bucket != bucket)  # the gallery bucket's copy first
            ).first()
            if known is not None:
                where = (known[0], photo)
            else:
                try:
                    stat_object(client, bucket, photo)
                except ObjectMissing as exc:
                    raise UnknownGalleryPhoto(f"{photo!r} is no file here nor a gallery photo of {slug}") from exc
                where = (bucket, photo)
        row_id, added = _reference_row(session, landmark_id, *where)
        chosen.append(row_id)
        result.keys.append(where[1])
        result.added += int(added)
    demoted = session.execute(
        update(GalleryPhoto)
        .where(
            GalleryPhoto.landmark_id == landmark_id,
            GalleryPhoto.role == GalleryRole.reference,
            GalleryPhoto.id.not_in(chosen),
        )
        .values(role=GalleryRole.train)
    )
    result.demoted = demoted.rowcount or 0
    return result


def list_references(session: Session, slug: str | None = None) -> list[LandmarkReferences]:
    """Each active landmark (or just ``slug``) with its reference photos; landmarks without any are listed too."""
    query = select(Landmark).where(Landmark.active.is_(True)).order_by(Landmark.slug)
    if slug is not None:
        landmark_id_of(session, slug)
        query = select(Landmark).where(Landmark.slug == slug)
    landmarks = session.execute(query).scalars().all()
    refs: dict[int, list[ReferencePhoto]] = {lm.id: [] for lm in landmarks}
    rows = session.execute(
        select(GalleryPhoto)
        .where(GalleryPhoto.role == GalleryRole.reference, GalleryPhoto.landmark_id.in_(list(refs)))
        .order_by(GalleryPhoto.id)
    ).scalars()
    for r in rows:
        refs[r.landmark_id].append(ReferencePhoto(r.bucket, r.key, r.source, r.cleaning_score))  # type: ignore[index]
    return [LandmarkReferences(lm.slug, lm.name, refs[lm.id]) for lm in landmarks]
