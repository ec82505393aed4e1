"""Reprocessing as a persisted job: a row holds the selection, its state and where the feeder stands in it.

``landmarks reprocess`` only creates the row. A feeder (``feed_job``, one at a time per job under an advisory
lock) walks the selection in ``(created_at, id)`` keyset pages and sends a page only while the recognize queue
holds fewer than ``bound`` messages, so the broker's memory stays flat whatever the selection's size; the cursor is
advanced after the page is sent, so a killed feeder sends that page again (recognition is idempotent) rather
than losing it. Photos created after the job are live uploads and are left to the live path.

Every page's messages name the model version active when the page was read (after the job row, so an
activation committed before the job, as ``model activate V --reprocess`` does, is always seen): a worker still
holding an older version looks the active one up at once instead of after its cache's TTL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import JobState, Photo, PhotoStatus, ReprocessJob
from shared.db.session import session_scope
from shared.ops.locks import FEED_LOCK, advisory_lock
from shared.ops.reprocess import reset_failed
from shared.ops.selectors import PhotoSelector, photo_ids_query
from shared.versions.registry import active_version


class Enqueue(Protocol):
    """Sends one recognize message per photo, each naming the model version it is meant for."""

    def __call__(self, photo_ids: Sequence[uuid.UUID], *, version_id: int | None) -> object: ...


DEFAULT_PAGE = 500
LIVE_STATES = (JobState.running, JobState.paused)
TRANSITIONS: dict[str, tuple[tuple[JobState, ...], JobState]] = {
    "pause": ((JobState.running,), JobState.paused),
    "resume": ((JobState.paused,), JobState.running),
    "cancel": ((JobState.running, JobState.paused), JobState.cancelled),
}
FeedOutcome = Literal["busy", "idle", "full", "fed", "finished"]


class JobNotFound(LookupError):
    pass


class JobStateError(ValueError):
    """The job cannot make that move (resume a cancelled job, pause a finished one)."""


@dataclass(frozen=True)
class FeedResult:
    job_id: int
    outcome: FeedOutcome  # busy: another feeder holds it; idle: not running; full: queue at its bound
    sent: int


def selector_to_json(selector: PhotoSelector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(selector):
        value = getattr(selector, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, PhotoStatus):
            value = value.value
        if value not in (None, False):
            out[f.name] = value
    return out


def selector_from_json(data: dict[str, Any]) -> PhotoSelector:
    values = dict(data)
    for name in ("since", "until"):
        if values.get(name):
            values[name] = datetime.fromisoformat(values[name])
    if values.get("status"):
        values["status"] = PhotoStatus(values["status"])
    return PhotoSelector(**values)


def count_selection(session: Session, selector: PhotoSelector) -> int:
    """How many photos the selector names: one COUNT query (what ``--dry-run`` prints)."""
    query = photo_ids_query(session, selector).order_by(None)
    return session.execute(select(func.count()).select_from(query.subquery())).scalar_one()


def create_job(
    session: Session, selector: PhotoSelector, *, priority: int, created_by: str | None, count: bool = True
) -> ReprocessJob:
    """A running job for the selection (raises SelectorError first when it cannot be made)."""
    total = count_selection(session, selector) if count else None
    photo_ids_query(session, selector)  # validates even when not counting
    job = ReprocessJob(
        selector=selector_to_json(selector),
        state=JobState.running,
        priority=priority,
        marker=session.execute(select(func.now())).scalar_one(),
        total=total,
        created_by=created_by,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int, *, for_update: bool = False) -> ReprocessJob:
    job = session.get(ReprocessJob, job_id, with_for_update=for_update)
    if job is None:
        raise JobNotFound(f"no reprocess job {job_id}")
    return job


def change_state(session: Session, job_id: int, action: str) -> ReprocessJob:
    """``pause``, ``resume`` or ``cancel``; the feeder sees the new state before its next page."""
    allowed, target = TRANSITIONS[action]
    job = get_job(session, job_id, for_update=True)
    if job.state not in allowed:
        raise JobStateError(f"job {job_id} is {job.state.value}: cannot {action} it")
    job.state = target
    if target == JobState.cancelled:
        job.finished_at = session.execute(select(func.now())).scalar_one()
    return job


def list_jobs(session: Session, *, live_only: bool = False, limit: int = 50) -> list[ReprocessJob]:
    query = select(ReprocessJob).order_by(ReprocessJob.id.desc()).limit(limit)
    if live_only:
        query = query.where(ReprocessJob.state.in_(LIVE_STATES))
    return list(session.execute(query).scalars())


def running_job_ids(session: Session) -> list[int]:
    return list(
        session.execute(
            select(ReprocessJob.id).where(ReprocessJob.state == JobState.running).order_by(ReprocessJob.id)
        ).scalars()
    )


def next_page(
    session: Session,
    selector: PhotoSelector,
    *,
    marker: datetime,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[tuple[datetime, uuid.UUID]]:
    """The next ``limit`` selected photos after ``after`` in (created_at, id) order: an index range, no OFFSET."""
    query = (
        photo_ids_query(session, selector)
        .with_only_columns(Photo.created_at, Photo.id)
        .where(Photo.created_at <= marker)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Photo.created_at, Photo.id) > tuple_(*after))
    return [(created, photo_id) for created, photo_id in session.execute(query).all()]


def feed_job(
    factory: sessionmaker[Session],
    job_id: int,
    *,
    depth: Callable[[], int],
    enqueue: Enqueue,
    bound: int,
    page_size: int = DEFAULT_PAGE,
) -> FeedResult:
    """Send the job's next pages while the queue (``depth()``) is under ``bound``; at most ``bound`` per call."""
    sent = 0
    with advisory_lock(factory, FEED_LOCK, job_id) as held:
        if not held:
            return FeedResult(job_id, "busy", 0)
        while sent < bound:
            with session_scope(factory) as session:
                job = get_job(session, job_id)
                if job.state != JobState.running:
                    return FeedResult(job_id, "idle", sent)
                room = min(bound - depth(), bound - sent, page_size)
                if room <= 0:
                    return FeedResult(job_id, "full", sent)
                after = (job.cursor_created_at, job.cursor_id) if job.cursor_id is not None else None
                page = next_page(session, selector_from_json(job.selector), marker=job.marker, after=after, limit=room)
                if not page:
                    job.state = JobState.finished
                    job.finished_at = session.execute(select(func.now())).scalar_one()
                    return FeedResult(job_id, "finished", sent)
                photo_ids = [photo_id for _, photo_id in page]
                reset = reset_failed(session, photo_ids)  # committed before the send: claim_photo skips failed
                version = active_version(session)  # read after the job row: see the module's docstring
            enqueue(photo_ids, version_id=version.id if version is not None else None)
            with session_scope(factory) as session:
                job = get_job(session, job_id, for_update=True)
                job.cursor_created_at, job.cursor_id = page[-1]
                job.enqueued += len(photo_ids)
                job.reset += reset
            sent += len(photo_ids)
    return FeedResult(job_id, "fed", sent)


def feed_all(
    factory: sessionmaker[Session],
    *,
    depth: Callable[[], int],
    enqueue_for: Callable[[int], Enqueue],
    bound: int,
    page_size: int = DEFAULT_PAGE,
) -> list[FeedResult]:
    """One feeding round over every running job, oldest first; they share the queue's bound."""
    with session_scope(factory) as session:
        ids = running_job_ids(session)
        priorities = dict(
            session.execute(select(ReprocessJob.id, ReprocessJob.priority).where(ReprocessJob.id.in_(ids))).all()
        )
    return [
        feed_job(
            factory, job_id, depth=depth, enqueue=enqueue_for(priorities[job_id]), bound=bound, page_size=page_size
        )  # fmt: skip
        for job_id in ids
    ]


def processed_since(session: Session, job: ReprocessJob) -> int:
    """Photos of the job that reached a final state after it began (what ``--wait`` shows; a COUNT query).

    Narrowings that processing itself changes (``stale``, ``status``, ``model_older_than``) are dropped, or a
    processed photo would leave the count; photos created before the job and finished since by other work count
    too, so this is an upper estimate, capped at the job's total.
    """
    selector = replace(selector_from_json(job.selector), stale=False, status=None, model_older_than=None)
    if selector.is_empty():
        selector = replace(selector, all=True)
    query = (
        photo_ids_query(session, selector)
        .order_by(None)
        .where(
            Photo.created_at <= job.marker,
            Photo.updated_at > job.marker,
            Photo.status.in_([PhotoStatus.done, PhotoStatus.failed]),
        )
    )
    done = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    return min(done, job.total) if job.total is not None else done
