"""Photo rows from object events: who owns an object, and whether it needs (re)recognition.

Idempotent by construction: the row is keyed by (bucket, key) and claimed with INSERT ... ON CONFLICT, so a
redelivered or duplicated event finds the row and changes nothing unless the object's content (eTag) changed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import albums, corrections, mining
from shared.db.models import Photo, PhotoStatus, User
from shared.failures import record_failure

OWNER_METADATA_KEYS = ("user", "owner")
KEY_LAYOUT = re.compile(r"^users/(?P<user>[^/]+)/.+")
VALID_USER = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")
CONTENT_TYPE_CHARS = 255  # photos.content_type is VARCHAR(255)

Action = Literal["recognize", "unchanged", "deleted", "ignored", "failed"]


@dataclass(frozen=True)
class IngestResult:
    action: Action
    photo_id: uuid.UUID | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Ownership:
    """Who owns an object, or why no one does (``reason``: ``no_owner`` or ``owner_conflict``)."""

    owner: str | None
    reason: str | None = None
    message: str = ""


NO_OWNER = Ownership(None, "no_owner", "no x-amz-meta-user metadata, no users/<user>/ key")


def decide_owner(key: str, metadata: Mapping[str, str]) -> Ownership:
    """The one owner rule: where the key names an owner (``users/<user>/...``) the key decides; metadata
    (``x-amz-meta-user`` or ``owner``) only names the owner of keys outside that layout.

    Metadata naming someone else than the key fails the photo (``owner_conflict``) instead of picking a side: a
    server-side copy into another user's folder carries the source's metadata and must not land in its albums.
    """
    normalised = {k.lower().removeprefix("x-amz-meta-"): v for k, v in metadata.items()}
    named = {v.strip() for name in OWNER_METADATA_KEYS if (v := normalised.get(name) or "").strip()}
    valid = {v for v in named if VALID_USER.match(v)}
    match = KEY_LAYOUT.match(key)
    if match and VALID_USER.match(match["user"]):
        by_key = match["user"]
        if named - {by_key}:
            return Ownership(None, "owner_conflict", f"key names {by_key!r}, metadata names {sorted(named)!r}")
        return Ownership(by_key)
    if len(valid) == 1:
        return Ownership(valid.pop())
    if len(valid) > 1:
        return Ownership(None, "owner_conflict", f"metadata names {sorted(valid)!r}")
    return NO_OWNER


def resolve_owner(key: str, metadata: Mapping[str, str]) -> str | None:
    """The owner by :func:`decide_owner`, None when there is none or the key and metadata disagree."""
    return decide_owner(key, metadata).owner


def ensure_user(session: Session, name: str) -> int:
    session.execute(insert(User).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
    return session.execute(select(User.id).where(User.name == name)).scalar_one()


def record_created(
    session: Session,
    *,
    bucket: str,
    key: str,
    etag: str | None,
    size: int | None,
    content_type: str | None,
    owner: str | None,
    task_name: str = "ingest.object_event",
    ownership: Ownership | None = None,
) -> IngestResult:
    """Create or update the photo row of a new or overwritten object; without an owner it fails with the reason
    ``ownership`` gives (``no_owner`` when not given)."""
    content_type = _column_text(content_type, CONTENT_TYPE_CHARS)
    owner_id = ensure_user(session, owner) if owner else None
    photo_id = session.execute(
        insert(Photo)
        .values(
            id=uuid.uuid4(),
            bucket=bucket,
            key=key,
            etag=etag,
            size=size,
            content_type=content_type,
            owner_id=owner_id,
            status=PhotoStatus.pending,
        )
        .on_conflict_do_nothing(index_elements=["bucket", "key"])
        .returning(Photo.id)
    ).scalar_one_or_none()
    if photo_id is None:
        photo = session.execute(
            select(Photo).where(Photo.bucket == bucket, Photo.key == key).with_for_update()
        ).scalar_one()
        same_content = etag and photo.etag == etag and photo.owner_id == owner_id
        if same_content and photo.status == PhotoStatus.pending:
            # A redelivered event whose first enqueue may have been lost; recognition is idempotent.
            return IngestResult("recognize", photo.id)
        if same_content and photo.status != PhotoStatus.deleted:
            return IngestResult("unchanged", photo.id)
        albums.remove_photo(session, photo.id)  # new content: its old recognition no longer holds
        corrections.forget(session, photo.id)  # and neither do the user's corrections of the old content
        mining.withdraw(session, photo_id=photo.id)  # nor gallery rows made from the old content
        photo.etag, photo.size, photo.content_type, photo.owner_id = etag, size, content_type, owner_id
        photo.status, photo.error, photo.model_version_id = PhotoStatus.pending, None, None
        photo.delivery_count = 0  # new content: the runs that died were on the old one
        photo_id = photo.id
    if owner_id is None:
        why = ownership if ownership is not None and ownership.reason else NO_OWNER
        reason = why.reason or "no_owner"  # a given Ownership always has one; keeps the type narrow
        record_failure(
            session,
            task_name=task_name,
            reason=reason,
            message=f"s3://{bucket}/{key} has no owner ({why.message})",
            photo_id=photo_id,
            bucket=bucket,
            key=key,
        )
        return IngestResult("failed", photo_id, reason)
    return IngestResult("recognize", photo_id)


def _column_text(value: str | None, limit: int) -> str | None:
    """An uploader's header cut to fit its column, NULs dropped: PostgreSQL would refuse either with a DataError,
    which is never retried and would leave the photo without a row or a failure."""
    return None if value is None else value.replace("\x00", "")[:limit]


def record_removed(session: Session, *, bucket: str, key: str) -> IngestResult:
    """Mark the photo deleted and take it out of its albums; unknown objects are ignored."""
    photo = session.execute(
        select(Photo).where(Photo.bucket == bucket, Photo.key == key).with_for_update()
    ).scalar_one_or_none()
    if photo is None:
        return IngestResult("ignored", None, "unknown object")
    albums.remove_photo(session, photo.id)
    mining.withdraw(session, photo_id=photo.id)  # a deleted photo leaves the gallery at once
    photo.status = PhotoStatus.deleted
    return IngestResult("deleted", photo.id)


def keys_without_rows(session: Session, bucket: str, keys: list[str]) -> list[str]:
    """Those of ``keys`` that have no photo row (the reconciliation sweep enqueues them)."""
    if not keys:
        return []
    known = set(session.execute(select(Photo.key).where(Photo.bucket == bucket, Photo.key.in_(keys))).scalars())
    return [k for k in keys if k not in known]


def keys_missing_from_listing(session: Session, bucket: str, listed: set[str], *, listed_since: datetime) -> list[str]:
    """Live photo rows whose object was not in a listing that started at ``listed_since`` (a lost delete event).

    Rows created after the listing began are left alone: their object may have been uploaded behind the cursor.
    """
    rows = session.execute(
        select(Photo.key).where(
            Photo.bucket == bucket, Photo.status != PhotoStatus.deleted, Photo.created_at < listed_since
        )
    ).scalars()
    return [key for key in rows if key not in listed]


def stuck_photo_ids(session: Session, *, older_than: timedelta, limit: int = 1000) -> list[uuid.UUID]:
    """Photos left pending or processing for too long (their task was lost); the sweep re-enqueues them."""
    cutoff = datetime.now().astimezone() - older_than
    return list(
        session.execute(
            select(Photo.id)
            .where(
                Photo.status.in_([PhotoStatus.pending, PhotoStatus.processing]),
                Photo.updated_at < cutoff,
                Photo.owner_id.is_not(None),
            )
            .order_by(Photo.updated_at)
            .limit(limit)
        ).scalars()
    )


def photos_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Photo.status, func.count()).group_by(Photo.status)).all()
    return {status.value: count for status, count in rows}
