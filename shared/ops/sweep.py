"""The reconciliation sweep in bounded memory: the bucket listing and the photo rows, merged page by page in key
order, so a lost event never means a lost (or wrongly deleted) photo whatever the bucket's size.

Per page of ``page_size`` listed keys, the rows in the same key range are read by keyset (the ``key COLLATE "C"``
index: byte order, as S3 lists). A listed object without a row, or whose row is deleted (a replayed or reordered
delete), gets a created event carrying the listed eTag and size; a listed eTag that differs from the row's is a
lost overwrite. A live row without an object is a lost delete, applied at the end only if the object is really
gone (stat) and only if all of them together stay under ``max_delete_share`` of the bucket's live photos: an
empty or truncated listing must not wipe albums. An advisory lock keeps one sweep per bucket; the cursor row
(``sweep_cursors``) lets a killed sweep resume after the last page it finished. Times are the database's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import Photo, PhotoStatus, SweepCursor
from shared.db.session import session_scope
from shared.ops.locks import SWEEP_LOCK, advisory_lock, lock_key
from shared.photos import records as photos
from shared.storage import ObjectInfo, list_objects, object_exists

log = structlog.get_logger(__name__)

#: Deleting this many rows is always allowed, whatever the share (a small bucket losing a few delete events).
SWEEP_SOURCE = "landmarks:reconcile"  # the event source of the objects a sweep found without a row
MIN_DELETES = 10
REMOVE_BATCH = 200

Lister = Callable[[str | None], Iterable[ObjectInfo]]  # start_after -> objects in key (byte) order
Exists = Callable[[str], bool]  # stat: is the object there?
SendCreated = Callable[[ObjectInfo], None]  # enqueue a created event with the listed eTag and size
Requeue = Callable[[Sequence[uuid.UUID]], None]


@dataclass
class SweepReport:
    listed: int = 0
    enqueued: int = 0  # objects without a row
    restored: int = 0  # rows marked deleted whose object is listed
    changed: int = 0  # listed eTag differs from the row's
    removed: int = 0
    kept: int = 0  # missing from the listing, but a stat found the object
    refused: int = 0  # lost deletes not applied: more than the share
    skipped_recent: int = 0  # objects without a row modified lately: their own event is probably queued
    requeued: int = 0
    resumed: bool = False
    busy: bool = False
    pages: int = 0
    candidates: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "candidates"}


@dataclass(frozen=True)
class Row:
    key: str
    etag: str | None
    status: PhotoStatus
    created_at: datetime


def _c(column: Any) -> Any:
    return column.collate("C")


def rows_in_range(session: Session, bucket: str, *, after: str, upto: str | None, limit: int) -> list[Row]:
    """Photo rows of ``bucket`` with ``after < key <= upto`` (bytewise), the first ``limit`` of them in key order."""
    query = (
        select(Photo.key, Photo.etag, Photo.status, Photo.created_at)
        .where(Photo.bucket == bucket, _c(Photo.key) > after)
        .order_by(_c(Photo.key))
        .limit(limit)
    )
    if upto is not None:
        query = query.where(_c(Photo.key) <= upto)
    return [Row(*r) for r in session.execute(query).all()]


def iter_rows(
    factory: sessionmaker[Session], bucket: str, *, after: str, upto: str | None, page_size: int
) -> Iterator[Row]:
    """Every row in the range, ``page_size`` at a time (short transactions, bounded memory)."""
    while True:
        with session_scope(factory) as session:
            rows = rows_in_range(session, bucket, after=after, upto=upto, limit=page_size)
        yield from rows
        if len(rows) < page_size:
            return
        after = rows[-1].key


def live_count(session: Session, bucket: str) -> int:
    return session.execute(
        select(func.count()).where(Photo.bucket == bucket, Photo.status != PhotoStatus.deleted)
    ).scalar_one()


class Sweep:
    """One sweep of one bucket (see the module docstring)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        bucket: str,
        *,
        send_created: SendCreated,
        exists: Exists,
        page_size: int,
        max_delete_share: float,
        recent_s: float,
    ) -> None:
        self.factory, self.bucket = factory, bucket
        self.send_created, self.exists = send_created, exists
        self.page_size, self.max_delete_share, self.recent_s = page_size, max_delete_share, recent_s
        self.report = SweepReport()
        self.listed_since: datetime | None = None
        self.cap = MIN_DELETES

    def start(self) -> str:
        """Resume a killed sweep's cursor, or start one; returns the key to list after ("" from the start)."""
        with session_scope(self.factory) as session:
            now = session.execute(select(func.now())).scalar_one()
            cursor = session.get(SweepCursor, self.bucket, with_for_update=True)
            if cursor is None:
                cursor = SweepCursor(bucket=self.bucket, after_key="", listed_since=now)
                session.add(cursor)
            self.report.resumed = bool(cursor.after_key)
            self.listed_since, after = cursor.listed_since, cursor.after_key
            self.now = now
            self.cap = max(MIN_DELETES, int(self.max_delete_share * live_count(session, self.bucket)))
        return after

    def page(self, objects: list[ObjectInfo], *, after: str, upto: str | None) -> None:
        """Merge one page of the listing with the rows of its key range."""
        listed = {info.key: info for info in objects}
        for row in iter_rows(self.factory, self.bucket, after=after, upto=upto, page_size=self.page_size):
            info = listed.pop(row.key, None)
            if info is None:
                self._missing(row)
            elif row.status == PhotoStatus.deleted:
                self.send_created(info)
                self.report.restored += 1
            elif info.etag and row.etag and info.etag != row.etag:
                self.send_created(info)
                self.report.changed += 1
        recent = self.now - timedelta(seconds=self.recent_s)
        for info in listed.values():
            if info.last_modified is not None and info.last_modified > recent:
                self.report.skipped_recent += 1
                continue
            self.send_created(info)
            self.report.enqueued += 1
        self.report.pages += 1

    def _missing(self, row: Row) -> None:
        if row.status == PhotoStatus.deleted or (self.listed_since and row.created_at >= self.listed_since):
            return  # already deleted, or created after the listing began (uploaded behind its position)
        if self.report.refused:
            self.report.refused += 1
        elif len(self.report.candidates) >= self.cap:
            self.report.refused = len(self.report.candidates) + 1
            self.report.candidates.clear()
        else:
            self.report.candidates.append(row.key)

    def advance(self, after_key: str) -> None:
        with session_scope(self.factory) as session:
            cursor = session.get(SweepCursor, self.bucket, with_for_update=True)
            if cursor is not None:
                cursor.after_key = after_key

    def finish(self) -> None:
        """Apply the lost deletes (each confirmed by a stat) unless refused, then drop the cursor."""
        if self.report.refused:
            log.warning(
                "sweep_deletes_refused",
                bucket=self.bucket,
                would_delete=self.report.refused,
                allowed=self.cap,
                share=self.max_delete_share,
            )
        gone = []
        for key in self.report.candidates:
            if self.exists(key):
                self.report.kept += 1
            else:
                gone.append(key)
        for start in range(0, len(gone), REMOVE_BATCH):
            with session_scope(self.factory) as session:
                for key in gone[start : start + REMOVE_BATCH]:
                    if photos.record_removed(session, bucket=self.bucket, key=key).action == "deleted":
                        self.report.removed += 1
        self.report.candidates.clear()
        with session_scope(self.factory) as session:
            cursor = session.get(SweepCursor, self.bucket)
            if cursor is not None:
                session.delete(cursor)


def sweep_bucket(
    factory: sessionmaker[Session],
    bucket: str,
    *,
    list_after: Lister,
    exists: Exists,
    send_created: SendCreated,
    requeue: Requeue,
    page_size: int = 1000,
    max_delete_share: float = 0.10,
    stuck_after_s: float = 600.0,
    stuck_limit: int = 1000,
) -> SweepReport:
    """The whole sweep: listing merged with rows, lost deletes, then photos whose task was lost."""
    with advisory_lock(factory, SWEEP_LOCK, lock_key(bucket)) as held:
        if not held:
            return SweepReport(busy=True)
        sweep = Sweep(
            factory,
            bucket,
            send_created=send_created,
            exists=exists,
            page_size=page_size,
            max_delete_share=max_delete_share,
            recent_s=stuck_after_s,
        )
        after = sweep.start()
        page: list[ObjectInfo] = []
        for info in list_after(after or None):
            sweep.report.listed += 1
            page.append(info)
            if len(page) >= page_size:
                sweep.page(page, after=after, upto=page[-1].key)
                after = page[-1].key
                sweep.advance(after)
                page = []
        sweep.page(page, after=after, upto=None)  # and every row after the last listed key
        sweep.finish()
        with session_scope(factory) as session:
            stuck = photos.claim_stuck_photo_ids(session, older_than_s=stuck_after_s, limit=stuck_limit)
        requeue(stuck)
        sweep.report.requeued = len(stuck)
        return sweep.report


def reconcile_bucket(
    factory: sessionmaker[Session],
    client: Any,
    bucket: str,
    *,
    send_event: Callable[[dict[str, Any]], None],
    requeue: Requeue,
    page_size: int = 1000,
    max_delete_share: float = 0.10,
    stuck_after_s: float = 600.0,
) -> SweepReport:
    """The sweep against object storage: objects without a row are sent as created events (``send_event`` takes
    the record, carrying the listed eTag and size), and photos whose task was lost go to ``requeue``. The ingest
    task and `landmarks reconcile --wait` both run it, each with its own way to reach the broker."""
    from datetime import UTC

    from shared.events import CREATED, ObjectEvent

    def send_created(info: ObjectInfo) -> None:
        event = ObjectEvent(CREATED, bucket, info.key, info.size, info.etag, None, {}, datetime.now(UTC), SWEEP_SOURCE)
        send_event(event.to_record())

    return sweep_bucket(
        factory,
        bucket,
        list_after=lambda after: list_objects(client, bucket, start_after=after),
        exists=lambda key: object_exists(client, bucket, key),
        send_created=send_created,
        requeue=requeue,
        page_size=page_size,
        max_delete_share=max_delete_share,
        stuck_after_s=stuck_after_s,
    )
