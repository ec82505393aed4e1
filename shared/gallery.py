"""The landmark gallery: importing landmarks and their photos (objects in the gallery bucket, rows in PostgreSQL).

Re-import is idempotent: objects are keyed by content hash, rows are claimed with INSERT ... ON CONFLICT.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from minio import Minio
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import City, GalleryPhoto, GalleryRole, Landmark
from shared.recognition.evaluation import EvalRow
from shared.storage import ObjectMissing, put_file, stat_object

NEGATIVES_PREFIX = "_negatives"


@dataclass
class ImportReport:
    landmarks_created: int = 0
    photos_added: int = 0
    photos_known: int = 0
    negatives_added: int = 0
    objects_uploaded: int = 0
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
    """Landmark rows become gallery photos (role ``train``), non-landmark rows ``negative`` photos."""
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
            role = GalleryRole.train
            conflict = ["landmark_id", "bucket", "key"]
            where = None
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
        elif row.is_landmark:
            report.photos_added += 1
            report.per_landmark[row.landmark] = report.per_landmark.get(row.landmark, 0) + 1  # type: ignore[index]
        else:
            report.negatives_added += 1
    return report
