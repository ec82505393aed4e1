"""Photo rows from object events: who owns an object, and whether it needs (re)recognition.

Idempotent by construction: the row is keyed by (bucket, key) and claimed with INSERT ... ON CONFLICT, so a
redelivered or duplicated event finds the row and changes nothing unless the object's content (eTag) changed.
An event without an eTag (unknown content) never counts as a change, and an event older than the last one applied
to the key (S3 ``sequencer``, SeaweedFS ``ts_ns``) is ignored, so a late create never undoes a newer delete.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import Photo, PhotoStatus, User
from shared.gallery import mining
from shared.photos import albums, corrections
from shared.photos.failures import record_failure

OWNER_METADATA_KEYS = ("user", "owner")
KEY_LAYOUT = re.compile(r"^users/(?P<user>[^/]+)/.+")
VALID_USER = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")
CONTENT_TYPE_CHARS = 255  # photos.content_type is VARCHAR(255)
SEQUENCE_WIDTH = 32  # hex digits: S3 sequencers are up to 16-20, SeaweedFS ts_ns 16

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


def event_order(sequencer: str | None) -> str | None:
    """A sequencer normalised so that string order is event order: upper-case hex, left-padded (S3 says to compare
    them as hexadecimal numbers); None when absent or not hex (no order known)."""
    value = (sequencer or "").strip().upper()
    if not value or len(value) > SEQUENCE_WIDTH or any(c not in "0123456789ABCDEF" for c in value):
        return None
    return value.rjust(SEQUENCE_WIDTH, "0")


def _older(photo: Photo, order: str | None) -> bool:
    """Whether an event of this order is older than the last one applied to the photo's key."""
    return order is not None and photo.event_seq is not None and order < photo.event_seq


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
    sequencer: str | None = None,
) -> IngestResult:
    """Create or update the photo row of a new or overwritten object; without an owner it fails with the reason
    ``ownership`` gives (``no_owner`` when not given)."""
    content_type = _column_text(content_type, CONTENT_TYPE_CHARS)
    etag = etag or None  # "" is what events without an eTag carry: unknown, not new content
    order = event_order(sequencer)
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
            event_seq=order,
        )
        .on_conflict_do_nothing(index_elements=["bucket", "key"])
        .returning(Photo.id)
    ).scalar_one_or_none()
    if photo_id is None:
        photo = session.execute(
            select(Photo).where(Photo.bucket == bucket, Photo.key == key).with_for_update()
        ).scalar_one()
        if _older(photo, order):
            return IngestResult("ignored", photo.id, "older event")
        photo.event_seq = order or photo.event_seq
        same_content = (etag is None or photo.etag == etag) and photo.owner_id == owner_id
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


def record_removed(session: Session, *, bucket: str, key: str, sequencer: str | None = None) -> IngestResult:
    """Mark the photo deleted and take it out of its albums; unknown objects and older events are ignored.

    The caller checks first that the object is really gone (a replayed or reordered delete must not hide a live
    photo); the sweep brings back rows whose object is listed again.
    """
    order = event_order(sequencer)
    photo = session.execute(
        select(Photo).where(Photo.bucket == bucket, Photo.key == key).with_for_update()
    ).scalar_one_or_none()
    if photo is None:
        return IngestResult("ignored", None, "unknown object")
    if _older(photo, order):
        return IngestResult("ignored", photo.id, "older event")
    photo.event_seq = order or photo.event_seq
    albums.remove_photo(session, photo.id)
    mining.withdraw(session, photo_id=photo.id)  # a deleted photo leaves the gallery at once
    photo.status = PhotoStatus.deleted
    return IngestResult("deleted", photo.id)


def claim_stuck_photo_ids(session: Session, *, older_than_s: float, limit: int = 1000) -> list[uuid.UUID]:
    """Photos left pending or processing longer than ``older_than_s`` by the database's clock (their task was
    lost), touched as they are returned: the next sweep skips them while their new message waits in the queue."""
    stuck = (
        select(Photo.id)
        .where(
            Photo.status.in_([PhotoStatus.pending, PhotoStatus.processing]),
            Photo.updated_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s),
            Photo.owner_id.is_not(None),
        )
        .order_by(Photo.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = session.execute(
        update(Photo).where(Photo.id.in_(stuck.scalar_subquery())).values(updated_at=func.now()).returning(Photo.id)
    )
    return list(claimed.scalars())
