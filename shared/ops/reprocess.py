"""Reprocessing: reset what must be reset, then hand the photos to an ``enqueue`` callable in batches.

A failed photo is set back to ``pending`` in the same transaction that picks its batch, committed before its
message is sent (``claim_photo`` skips failed photos); a ``done`` photo stays visible in its albums until the
new result replaces it. Progress is measured against a database timestamp taken before the first batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import Photo, PhotoStatus
from shared.db.session import session_scope
from shared.ops.selectors import PhotoSelector, select_photo_ids

Enqueue = Callable[[Sequence[uuid.UUID]], None]
FINAL = (PhotoStatus.done, PhotoStatus.failed, PhotoStatus.deleted)
DEFAULT_BATCH = 500


@dataclass(frozen=True)
class ReprocessResult:
    photo_ids: list[uuid.UUID]
    enqueued: int
    reset: int  # failed photos set back to pending
    marker: datetime  # database time before the first batch: a photo finished after it was processed again

    @property
    def selected(self) -> int:
        return len(self.photo_ids)


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    failed: int
    deleted: int

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.deleted

    @property
    def complete(self) -> bool:
        return self.finished >= self.total


def chunks(items: Sequence[uuid.UUID], size: int) -> Iterator[Sequence[uuid.UUID]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def reset_failed(session: Session, photo_ids: Sequence[uuid.UUID]) -> int:
    """Set the failed ones among ``photo_ids`` back to pending; their failure rows stay open until success."""
    if not photo_ids:
        return 0
    result = session.execute(
        update(Photo)
        .where(Photo.id.in_(list(photo_ids)), Photo.status == PhotoStatus.failed)
        .values(status=PhotoStatus.pending, error=None)
    )
    return result.rowcount or 0


def reprocess(
    factory: sessionmaker[Session],
    selector: PhotoSelector,
    enqueue: Enqueue,
    *,
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = False,
) -> ReprocessResult:
    """Select, then per batch: reset failed photos and commit, then enqueue. ``dry_run`` changes nothing."""
    with session_scope(factory) as session:
        marker = session.execute(select(func.now())).scalar_one()
        photo_ids = select_photo_ids(session, selector)
    if dry_run:
        return ReprocessResult(photo_ids, 0, 0, marker)
    enqueued = reset = 0
    for batch in chunks(photo_ids, batch_size):
        with session_scope(factory) as session:
            reset += reset_failed(session, batch)
        enqueue(batch)  # after the commit: a worker must find the photo pending, not failed
        enqueued += len(batch)
    return ReprocessResult(photo_ids, enqueued, reset, marker)


def progress(session: Session, photo_ids: Sequence[uuid.UUID], marker: datetime) -> Progress:
    """How many of ``photo_ids`` reached a final state after ``marker`` (each was claimed and finished again)."""
    counts = dict.fromkeys(FINAL, 0)
    for batch in chunks(photo_ids, 5000):
        rows = session.execute(
            select(Photo.status, func.count())
            .where(Photo.id.in_(list(batch)), Photo.status.in_(FINAL), Photo.updated_at > marker)
            .group_by(Photo.status)
        ).all()
        for status, count in rows:
            counts[status] += count
    return Progress(
        total=len(photo_ids),
        done=counts[PhotoStatus.done],
        failed=counts[PhotoStatus.failed],
        deleted=counts[PhotoStatus.deleted],
    )
