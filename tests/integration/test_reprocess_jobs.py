"""Reprocess jobs against the real PostgreSQL: keyset pages, the queue bound, pause/resume/cancel and the lock.

The queue is a list with no consumer (``depth`` is its length), so what the feeder sends is exactly what it read.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import JobState, ModelStatus, ModelVersion, Photo, PhotoStatus
from shared.ops import jobs
from shared.ops.locks import FEED_LOCK
from shared.ops.selectors import PhotoSelector, select_photo_ids
from shared.photos import records as photos
from shared.versions import registry

pytestmark = pytest.mark.integration

USER = "jobs-user"


def make_photos(session: Session, count: int, *, user: str = USER, start: str = "2024-01-01") -> list[uuid.UUID]:
    base = datetime.fromisoformat(start).replace(tzinfo=UTC)
    ids = []
    for i in range(count):
        result = photos.record_created(
            session, bucket="jobs", key=f"users/{user}/{start}-{i}.jpg", etag="e", size=1, content_type=None, owner=user
        )
        # Pairs share a creation time: the keyset must break ties by id.
        session.get(Photo, result.photo_id).created_at = base + timedelta(minutes=i // 2)
        ids.append(result.photo_id)
    session.flush()
    return ids


class Queue:
    """A recognize queue nobody consumes."""

    def __init__(self) -> None:
        self.messages: list[uuid.UUID] = []
        self.versions: list[int | None] = []  # the model version each message names

    def depth(self) -> int:
        return len(self.messages)

    def enqueue(self, photo_ids, *, version_id: int | None) -> None:
        self.messages.extend(photo_ids)
        self.versions.extend([version_id] * len(photo_ids))


def new_job(session: Session, selector: PhotoSelector | None = None) -> int:
    job = jobs.create_job(session, selector or PhotoSelector(user=USER), priority=9, created_by="test")
    session.commit()
    return job.id


def test_a_job_walks_its_selection_in_keyset_pages_exactly_once(
    session_factory: sessionmaker[Session], db_session: Session
) -> None:
    ids = make_photos(db_session, 11)
    expected = select_photo_ids(db_session, PhotoSelector(user=USER))
    job_id = new_job(db_session)
    queue = Queue()

    result = jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=100, page_size=3)
    assert (result.outcome, result.sent) == ("finished", 11)
    assert jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=100).outcome == (
        "idle"
    )

    assert queue.messages == expected and sorted(queue.messages) == sorted(ids)
    db_session.expire_all()
    job = jobs.get_job(db_session, job_id)
    assert (job.state, job.total, job.enqueued) == (JobState.finished, 11, 11)


def test_photos_created_after_the_job_are_left_to_the_live_path(
    session_factory: sessionmaker[Session], db_session: Session
) -> None:
    make_photos(db_session, 3)
    job_id = new_job(db_session)
    [late] = make_photos(db_session, 1, start="2999-01-01")
    queue = Queue()
    jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=100)
    assert len(queue.messages) == 3 and late not in queue.messages


def test_the_feeder_never_fills_the_queue_past_its_bound(
    session_factory: sessionmaker[Session], db_session: Session
) -> None:
    make_photos(db_session, 10)
    job_id = new_job(db_session)
    queue = Queue()
    queue.messages.append(uuid.uuid4())  # a live upload already waiting counts against the bound

    first = jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=4, page_size=3)
    assert (first.outcome, first.sent, queue.depth()) == ("full", 3, 4)
    again = jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=4)
    assert (again.outcome, again.sent) == ("full", 0)

    del queue.messages[:4]  # the workers drained the queue
    jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=4)
    assert queue.depth() == 4
    db_session.expire_all()
    assert jobs.get_job(db_session, job_id).enqueued == 7


def test_pause_resume_and_cancel(session_factory: sessionmaker[Session], db_session: Session) -> None:
    make_photos(db_session, 6)
    job_id = new_job(db_session)
    queue = Queue()
    jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=2)
    assert queue.depth() == 2

    jobs.change_state(db_session, job_id, "pause")
    db_session.commit()
    paused = jobs.feed_job(session_factory, job_id, depth=lambda: 0, enqueue=queue.enqueue, bound=100)
    assert (paused.outcome, paused.sent, queue.depth()) == ("idle", 0, 2)
    with pytest.raises(jobs.JobStateError, match="paused: cannot pause"):
        jobs.change_state(db_session, job_id, "pause")

    jobs.change_state(db_session, job_id, "resume")
    db_session.commit()
    jobs.feed_job(session_factory, job_id, depth=lambda: 0, enqueue=queue.enqueue, bound=2)
    assert queue.depth() == 4  # resumed after its cursor: nothing sent twice
    assert len(set(queue.messages)) == 4

    jobs.change_state(db_session, job_id, "cancel")
    db_session.commit()
    cancelled = jobs.feed_job(session_factory, job_id, depth=lambda: 0, enqueue=queue.enqueue, bound=100)
    assert (cancelled.outcome, queue.depth()) == ("idle", 4)
    with pytest.raises(jobs.JobStateError, match="cancelled: cannot resume"):
        jobs.change_state(db_session, job_id, "resume")
    with pytest.raises(jobs.JobNotFound):
        jobs.change_state(db_session, 10**9, "pause")


def test_one_feeder_per_job_under_the_advisory_lock(
    session_factory: sessionmaker[Session], db_session: Session, db_engine: Engine
) -> None:
    make_photos(db_session, 3)
    job_id = new_job(db_session)
    queue = Queue()
    with db_engine.connect() as other:  # another feeder, in another process, holds this job
        assert other.execute(select(func.pg_try_advisory_xact_lock(FEED_LOCK, job_id))).scalar_one()
        busy = jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=100)
        assert (busy.outcome, queue.depth()) == ("busy", 0)
        other.rollback()
    assert jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=100).sent == 3


def test_failed_photos_are_reset_before_their_message_is_sent(
    session_factory: sessionmaker[Session], db_session: Session
) -> None:
    ids = make_photos(db_session, 3)
    db_session.get(Photo, ids[1]).status = PhotoStatus.failed
    job_id = new_job(db_session)
    seen: list[PhotoStatus] = []

    def enqueue(photo_ids, *, version_id: int | None) -> None:
        with session_factory() as session:
            seen.extend(session.get(Photo, i).status for i in photo_ids)

    jobs.feed_job(session_factory, job_id, depth=lambda: 0, enqueue=enqueue, bound=100)
    assert PhotoStatus.failed not in seen and len(seen) == 3
    db_session.expire_all()
    assert jobs.get_job(db_session, job_id).reset == 1


def test_dry_run_count_is_the_selection_size(db_session: Session) -> None:
    make_photos(db_session, 5)
    selector = PhotoSelector(user=USER)
    assert jobs.count_selection(db_session, selector) == len(select_photo_ids(db_session, selector)) == 5


def test_feed_all_serves_every_running_job_under_one_bound(
    session_factory: sessionmaker[Session], db_session: Session
) -> None:
    make_photos(db_session, 3)
    make_photos(db_session, 3, user="jobs-other")
    first, second = new_job(db_session), new_job(db_session, PhotoSelector(user="jobs-other"))
    queue = Queue()
    results = jobs.feed_all(session_factory, depth=queue.depth, enqueue_for=lambda priority: queue.enqueue, bound=4)
    assert [(r.job_id, r.sent) for r in results][:2] == [(first, 3), (second, 1)]
    assert queue.depth() == 4


def test_messages_name_the_version_active_when_the_job_was_fed(
    session_factory: sessionmaker[Session], db_session: Session
) -> None:
    """`model activate V --reprocess` commits the activation, then the job: every message of the job names V, so a
    worker still holding the old version (cached for ACTIVE_VERSION_TTL_S) looks the active one up at once."""
    make_photos(db_session, 3)
    for name in ("jobs-v1", "jobs-v2"):
        db_session.add(ModelVersion(version=name, backbone="efficientnet_lite2", status=ModelStatus.ready))
    db_session.flush()
    registry.activate(db_session, "jobs-v1")
    new = registry.activate(db_session, "jobs-v2")
    job_id = new_job(db_session)  # commits the activation before the job, as the CLI does
    queue = Queue()
    jobs.feed_job(session_factory, job_id, depth=queue.depth, enqueue=queue.enqueue, bound=100, page_size=2)
    assert len(queue.messages) == 3 and queue.versions == [new.id] * 3
