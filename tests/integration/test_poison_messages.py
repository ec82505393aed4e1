"""A photo whose recognition kills its worker process (a decoder bomb, a segfault) is a poison message.

Each delivery below runs in a forked child that dies with ``os._exit(137)``, as the OOM killer would kill it (no
``finally``, no rollback); the counts live in a scratch PostgreSQL database of the test's own, as they would in
the fleet's. Without a count the photo would be redelivered forever and, in a micro-batch, fail its batchmates
with it each time.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import migrate
from shared.db.models import Photo, PhotoStatus, TaskFailure, User
from shared.db.session import make_engine, make_session_factory, session_scope
from shared.photos import recognize
from shared.recognition.outcome import RecognitionOutcome
from shared.settings import RecognitionSettings, Settings
from tasks import recognition
from tasks.context import WorkerContext

pytestmark = pytest.mark.integration

MAX_DELIVERIES = 3
POISON = "users/alice/bomb.png"


class Context(WorkerContext):
    """A worker's context over the scratch database, with a recognizer that is never called (see fake_recognize)."""

    def recognizer(self, expected: int | None = None) -> tuple[int, Any]:
        return 1, object()

    @property
    def decode_threads(self) -> int:  # type: ignore[override]
        return 1


def fake_recognize(
    _client: object, _recognizer: object, refs: Sequence[recognize.PhotoRef], **_kwargs: object
) -> list[RecognitionOutcome]:
    """Recognise every photo, except that the poison photo kills the process, as a pixel bomb's MemoryError can."""
    if any(ref.key == POISON for ref in refs):
        os._exit(137)
    return [RecognitionOutcome(matches=[], meta={"batch_size": len(refs)}) for _ in refs]


def record_delivery(log: Path) -> Any:
    def deliver(photo_id: str, *_args: object, **_kwargs: object) -> dict[str, Any]:
        with log.open("a") as out:
            out.write(photo_id + "\n")
        return {"action": "recognized"}

    return deliver


class Request:
    """The parts of a celery-batches SimpleRequest that run_batch reads."""

    def __init__(self, photo_id: uuid.UUID) -> None:
        self.id = f"task-{photo_id}"
        self.args = [str(photo_id)]
        self.kwargs: dict[str, Any] = {}
        self.request_dict: dict[str, Any] = {}
        self.delivery_info: dict[str, Any] = {}


def deliver_once(url: str, photo_ids: list[uuid.UUID], log: Path, batched: bool) -> int:
    """One delivery of the photos' messages to a fresh worker process; its exit code (137: it died)."""

    def work() -> None:
        ctx = Context(Settings(database_url=url, recognition=RecognitionSettings(max_deliveries=MAX_DELIVERIES)))
        recognition.recognize.recognize_objects = fake_recognize  # type: ignore[assignment]
        recognition.deliver = record_delivery(log)  # type: ignore[assignment]
        recognition.context = lambda: ctx  # type: ignore[assignment]
        if batched:
            recognition.run_batch(ctx, None, [Request(p) for p in photo_ids])  # type: ignore[arg-type]
        else:
            for photo_id in photo_ids:
                recognition.recognize_photo.run(str(photo_id))
        ctx.engine.dispose()

    child = multiprocessing.get_context("fork").Process(target=work)
    child.start()
    child.join(120)
    return child.exitcode if child.exitcode is not None else -1


@pytest.fixture
def scratch(make_scratch_database) -> Iterator[tuple[str, Engine, sessionmaker[Session]]]:  # type: ignore[no-untyped-def]
    url = make_scratch_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    yield url, engine, make_session_factory(engine)
    engine.dispose()


def add_photos(factory: sessionmaker[Session], keys: list[str]) -> list[uuid.UUID]:
    with session_scope(factory) as session:
        alice = User(name="alice")
        session.add(alice)
        session.flush()
        photos = [Photo(bucket="photos", key=key, etag="e1", owner_id=alice.id) for key in keys]
        session.add_all(photos)
        session.flush()
        return [p.id for p in photos]


def undelivered(factory: sessionmaker[Session], ids: list[uuid.UUID], log: Path) -> list[uuid.UUID]:
    """The messages the broker would hand out again: photos neither delivered nor failed."""
    delivered = set(log.read_text().split()) if log.exists() else set()
    with session_scope(factory) as session:
        failed = set(session.execute(select(Photo.id).where(Photo.status == PhotoStatus.failed)).scalars())
    return [p for p in ids if str(p) not in delivered and p not in failed]


@pytest.mark.parametrize("batched", [True, False], ids=["micro_batch", "plain_task"])
def test_a_poison_photo_is_failed_as_worker_lost_and_its_batchmates_are_recognised(
    scratch: tuple[str, Engine, sessionmaker[Session]], tmp_path: Path, batched: bool
) -> None:
    url, _engine, factory = scratch
    keys = [f"users/alice/{i}.jpg" for i in range(3)] + [POISON] + [f"users/alice/{i}.jpg" for i in range(3, 6)]
    ids = add_photos(factory, keys)
    log = tmp_path / "delivered"
    deaths = 0
    for _ in range(10):  # the broker redelivers what was neither acknowledged nor failed
        pending = undelivered(factory, ids, log)
        if not pending:
            break
        deaths += deliver_once(url, pending, log, batched) == 137
    assert deaths == MAX_DELIVERIES
    poison = ids[keys.index(POISON)]
    delivered = set(log.read_text().split())
    assert delivered == {str(p) for p in ids if p != poison}
    with session_scope(factory) as session:
        photo = session.get(Photo, poison)
        assert photo.status == PhotoStatus.failed and photo.error.startswith("worker_lost")
        assert photo.delivery_count == 0
        failures = session.execute(select(TaskFailure)).scalars().all()
        assert [(f.photo_id, f.reason.split(":")[0]) for f in failures] == [(poison, "worker_lost")]
        assert not session.execute(select(Photo.id).where(Photo.delivery_count != 0)).all()


def test_runs_that_end_never_count(scratch: tuple[str, Engine, sessionmaker[Session]]) -> None:
    _url, _engine, factory = scratch
    [photo_id] = add_photos(factory, ["users/alice/retried.jpg"])
    for _ in range(2 * MAX_DELIVERIES):  # e.g. S3 down: every run ends in a retry
        with session_scope(factory) as session:
            ref = recognize.claim_photo(session, photo_id, max_deliveries=MAX_DELIVERIES)
            assert ref is not None and ref.deliveries == 0
            recognize.begin_runs(session, [photo_id])
        with session_scope(factory) as session:
            recognize.end_runs(session, [photo_id])
    with session_scope(factory) as session:
        recognize.begin_runs(session, [photo_id])  # this one died
    with session_scope(factory) as session:
        ref = recognize.claim_photo(session, photo_id, max_deliveries=MAX_DELIVERIES)
        assert ref is not None and ref.deliveries == 1


def test_new_content_starts_a_fresh_count(scratch: tuple[str, Engine, sessionmaker[Session]]) -> None:
    from shared.photos import records as photos

    _url, _engine, factory = scratch
    [photo_id] = add_photos(factory, ["users/alice/replaced.jpg"])
    with session_scope(factory) as session:
        recognize.begin_runs(session, [photo_id])
        recognize.begin_runs(session, [photo_id])
    with session_scope(factory) as session:
        photos.record_created(
            session, bucket="photos", key="users/alice/replaced.jpg", etag="e2", size=1, content_type=None,
            owner="alice",
        )  # fmt: skip
    with session_scope(factory) as session:
        assert session.get(Photo, photo_id).delivery_count == 0
