"""The fault suite's stack: a PostgreSQL cluster, a Redis server, `weed mini`, Celery workers and the SeaweedFS
bridge, every one of them its own process on free ports, so a test injects a fault by stopping and starting the
real process without touching the machine's shared PostgreSQL and Redis (other engineers' tests use those).

Built once per session (a small demo model takes most of the time); tests run in file order and each leaves the
stack running. A failing test prints the tail of every process log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from minio import Minio
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from devtools.stack.cgroup import MemoryCgroup
from devtools.stack.registry import Registry
from devtools.stack.testing import DemoModel, IsolatedStack, worker_app
from shared.db.models import Album, AlbumPhoto, Photo, PhotoStatus, Recognition
from shared.settings import Settings

# A small gallery: the faults do not depend on what is recognised, only on every photo reaching a final state.
FAULT_LANDMARKS = ("taj_mahal", "eiffel_tower", "colosseum")
FAULT_NEGATIVES = 4
# Short enough that a killed worker's task comes back within a test, longer than any task here (seconds). A retry
# countdown above it (late in the 30 s S3 outage) may run a task twice: harmless, the pipeline is idempotent.
VISIBILITY_TIMEOUT_S = 30.0
STUCK_AFTER_S = 10.0  # the sweep's "lost task" age (production: 10 minutes)
CONCURRENCY = {"ingest": 1, "recognize": 1, "albums": 1}
DEADLINE_S = 240.0
POLL_S = 0.3
FINAL = frozenset({PhotoStatus.done, PhotoStatus.failed, PhotoStatus.deleted})
T = TypeVar("T")


def private_dir(prefix: str) -> Path:
    """A temporary folder the ``postgres`` OS user can enter (pytest's are root-only 0700): initdb runs as it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@dataclass
class FaultStack:
    stack: IsolatedStack
    infra: Settings  # the same settings with the state folder of PostgreSQL and Redis
    model: DemoModel
    engine: Engine
    factory: sessionmaker[Session]
    minio: Minio
    db_password: str
    uploaded: dict[str, str] = field(default_factory=dict)  # key -> owner, every upload of the session

    @property
    def settings(self) -> Settings:
        return self.stack.settings

    @property
    def bucket(self) -> str:
        return self.settings.s3.photos_bucket

    # --- uploads and waiting ----------------------------------------------------------------------------------

    def photo(self, name: str) -> bytes:
        """A demo upload (``alice/taj_mahal.jpg``, ``bob/farm_dog.jpg``...), written by the model build."""
        return (self.model.data.out_dir / "uploads" / name).read_bytes()

    def upload(self, key: str, data: bytes, owner: str) -> str:
        result = self.minio.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg", metadata={"user": owner}
        )
        self.uploaded[key] = owner
        return result.etag

    def wait_until(self, check: Callable[[Session], T | None], what: str, timeout: float = DEADLINE_S) -> T:
        """Poll ``check`` in a fresh session until it returns something truthy; fail with ``what`` at the deadline.

        A database that does not answer (a test restarting it) counts as "not yet".
        """
        from sqlalchemy.exc import OperationalError

        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                with self.factory() as session:
                    last = check(session)
            except OperationalError as exc:
                last = f"PostgreSQL unavailable: {exc.__class__.__name__}"
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what} after {timeout:g} s (last: {last!r})")
            time.sleep(POLL_S)

    def photos(self, session: Session, keys: list[str]) -> dict[str, Photo]:
        rows = session.execute(select(Photo).where(Photo.bucket == self.bucket, Photo.key.in_(keys))).scalars()
        return {p.key: p for p in rows}

    def final(self, keys: list[str], timeout: float = DEADLINE_S) -> dict[str, Photo]:
        """Wait until every key has its photo row in a final state (done, failed, deleted)."""

        waiting: dict[str, str] = {}

        def check(session: Session) -> dict[str, Photo] | None:
            found = self.photos(session, keys)
            waiting.clear()
            waiting.update({k: found[k].status.value if k in found else "no row" for k in keys})
            if all(found.get(k) is not None and found[k].status in FINAL for k in keys):
                return found
            return None

        try:
            return self.wait_until(check, f"{len(keys)} photos to reach a final state", timeout)
        except pytest.fail.Exception:
            pytest.fail(f"photos not final after {timeout:g} s: {waiting}", pytrace=False)

    def settle(self, keys: list[str], *, quiet_s: float = 60.0) -> tuple[dict[str, Photo], bool]:
        """Wait for ``keys`` to be final; if some are still not after ``quiet_s``, run the reconciliation sweep as
        beat would (once they are older than the stuck age) and wait again. Returns the photos and whether the
        sweep was needed."""
        try:
            return self.final(keys, timeout=quiet_s), False
        except pytest.fail.Exception:
            pass
        time.sleep(STUCK_AFTER_S)
        self.reconcile()
        return self.final(keys), True

    def reconcile(self) -> dict[str, int]:
        """Run the sweep (`ingest.reconcile`) on a worker, as Celery beat does every few minutes."""
        result = self.stack.celery().send_task("ingest.reconcile", args=[self.bucket])
        return result.get(timeout=DEADLINE_S)

    def processing_started(self, keys: list[str]) -> bool:
        with self.factory() as session:
            statuses = [p.status for p in self.photos(session, keys).values()]
        return any(s != PhotoStatus.pending for s in statuses)

    # --- faults -----------------------------------------------------------------------------------------------

    def stop_postgres(self) -> None:
        from devtools.stack import postgres

        self.engine.dispose()
        _check(postgres.down(self.infra, Registry(self.infra.state_dir)))

    def start_postgres(self) -> None:
        from devtools.stack import postgres

        _check(postgres.up(self.infra, Registry(self.infra.state_dir), timeout=60))

    def stop_redis(self) -> None:
        from devtools.stack import redis_server

        _check(redis_server.down(self.infra, Registry(self.infra.state_dir)))

    def start_redis(self) -> None:
        from devtools.stack import redis_server

        _check(redis_server.up(self.infra, Registry(self.infra.state_dir), timeout=30))

    def stop_s3(self) -> None:
        from devtools.stack import seaweed

        _check(seaweed.down(self.settings, self.stack.registry))

    def start_s3(self) -> None:
        from devtools.stack import seaweed

        _check(seaweed.up(self.settings, self.stack.registry, timeout=90))

    def kill(self, app: str) -> list[int]:
        """SIGKILL the app's whole process group (a Celery worker with its pool): no shutdown handler runs."""
        from devtools.stack import proc

        record = self.stack.registry.read(app)
        assert record is not None and record.running(), f"{app} is not running"
        pids = [m.pid for m in proc.group_members(record.pgid)]
        os.killpg(record.pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while proc.group_members(record.pgid) and time.monotonic() < deadline:
            proc.reap(record.pid)
            time.sleep(0.1)
        proc.reap(record.pid)
        self.stack.registry.remove(app)
        return pids

    def kill_pool_child(self, app: str) -> int:
        """SIGKILL the pool process of a Celery worker (what the OOM killer picks), not the worker: the worker sees
        it lost and, with ``reject_on_worker_lost``, puts the task's message back at once. Returns its pid."""
        from devtools.stack import proc

        record = self.stack.registry.read(app)
        assert record is not None and record.running(), f"{app} is not running"
        children = [m.pid for m in proc.group_members(record.pgid) if m.ppid == record.pid]
        assert len(children) == 1, f"{app}: expected one pool process, found {children}"
        os.kill(children[0], signal.SIGKILL)
        return children[0]

    @contextlib.contextmanager
    def capped_recognize_worker(self, cgroup: MemoryCgroup, env: dict[str, str]) -> Iterator[str]:
        """Swap the stack's recognize worker for one running inside ``cgroup`` (its pool processes too), with
        ``env`` on top of the stack's settings; yields the app's name. The usual worker is back on exit."""
        tag = uuid.uuid4().hex[:6]
        app = worker_app(self.settings, "recognize", CONCURRENCY["recognize"], f"capped-{tag}", env)
        name = "worker-recognize-capped"
        self.stack.apps[name] = dataclasses.replace(app, name=name, argv=cgroup.wrap(app.argv))
        self.stack.stop("worker-recognize")
        try:
            self.stack.start(name)
            yield name
        finally:
            self.stack.stop(name)
            del self.stack.apps[name]
            self.stack.start("worker-recognize")

    # --- logs and the final audit -----------------------------------------------------------------------------

    def log_files(self) -> list[Path]:
        return sorted((Path(self.settings.state_dir) / "logs").glob("*.log"))

    def log_lines(self, prefix: str = "worker-") -> Iterator[dict[str, Any]]:
        """The JSON lines of the app logs whose file name starts with ``prefix`` (other lines skipped)."""
        for path in self.log_files():
            if not path.name.startswith(prefix):
                continue
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue

    def task_starts(self, task: str, photo_id: str) -> list[str]:
        """Task ids of every start of ``task`` for the photo, from the workers' ``task_started`` lines."""
        return [
            str(line.get("task_id"))
            for line in self.log_lines()
            if line.get("event") == "task_started" and line.get("task") == task and line.get("photo_id") == photo_id
        ]

    def audit(self) -> list[str]:
        """What must hold after any fault, over the whole database; returns the violations found."""
        problems: list[str] = []
        with self.factory() as session:
            keys = list(self.uploaded)
            found = self.photos(session, keys)
            missing = sorted(set(keys) - set(found))
            if missing:
                problems.append(f"uploads without a photo row: {missing}")
            unfinished = {k: p.status.value for k, p in found.items() if p.status not in FINAL}
            if unfinished:
                problems.append(f"photos not in a final state: {unfinished}")
            duplicates = session.execute(
                select(Photo.bucket, Photo.key, func.count()).group_by(Photo.bucket, Photo.key).having(func.count() > 1)
            ).all()
            if duplicates:
                problems.append(f"duplicate photo rows: {duplicates}")
            counts = session.execute(
                select(Album.id, Album.photo_count, func.count(AlbumPhoto.photo_id))
                .outerjoin(AlbumPhoto, AlbumPhoto.album_id == Album.id)
                .group_by(Album.id)
                .having(Album.photo_count != func.count(AlbumPhoto.photo_id))
            ).all()
            if counts:
                problems.append(f"album counts differ from membership (id, count, members): {counts}")
            ranks = session.execute(
                select(Recognition.photo_id, Recognition.model_version_id, Recognition.rank, func.count())
                .group_by(Recognition.photo_id, Recognition.model_version_id, Recognition.rank)
                .having(func.count() > 1)
            ).all()
            if ranks:
                problems.append(f"recognitions repeated for a (photo, version, rank): {ranks}")
            foreign = session.execute(
                select(Album.id, Photo.key)
                .join(AlbumPhoto, AlbumPhoto.album_id == Album.id)
                .join(Photo, Photo.id == AlbumPhoto.photo_id)
                .where(Album.owner_id != Photo.owner_id)
            ).all()
            if foreign:
                problems.append(f"albums holding another user's photos: {foreign}")
            not_done = session.execute(
                select(Photo.key, Photo.status)
                .join(AlbumPhoto, AlbumPhoto.photo_id == Photo.id)
                .where(Photo.status != PhotoStatus.done)
            ).all()
            if not_done:
                problems.append(f"album members that are not done photos: {not_done}")
            done_without = session.execute(
                select(Photo.key)
                .where(Photo.status == PhotoStatus.done)
                .where(
                    ~select(Recognition.photo_id)
                    .where(
                        Recognition.photo_id == Photo.id,
                        Recognition.model_version_id == Photo.model_version_id,
                        Recognition.rank == 0,
                    )
                    .exists()
                )
            ).all()
            if done_without:
                problems.append(f"done photos without a recognition of their model version: {done_without}")
        return problems


def _check(outcome: Any) -> None:
    if outcome.failed:
        raise RuntimeError(f"{outcome.name} at {outcome.address}: {outcome.detail}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so a fixture can tell whether its test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def fault_stack_session() -> Iterator[FaultStack]:
    from devtools import demo_data
    from devtools.stack import postgres, redis_server, testing
    from shared.db import migrate

    if not demo_data.DEFAULT_RCC_DIR.is_dir():
        pytest.skip(f"{demo_data.DEFAULT_RCC_DIR} is absent: install Debian's {demo_data.DEBIAN_PACKAGE} (make test)")
    root = private_dir("landmarks-faults-")
    try:
        pg_port, redis_port = testing.free_ports(2)
        # A password in the URL (the cluster trusts local connections and never asks for it), so the log check
        # has a database secret to look for.
        db_password = f"faults-db-{uuid.uuid4().hex}"
        database_url = f"postgresql+psycopg2://postgres:{db_password}@127.0.0.1:{pg_port}/landmarks_faults"
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        settings = testing.isolated_settings(root / "stack", database_url=database_url, redis_url=redis_url)
        settings = settings.model_copy(
            update={"broker_visibility_timeout_s": VISIBILITY_TIMEOUT_S, "stuck_after_s": STUCK_AFTER_S}
        )
        infra = settings.model_copy(update={"state_dir": root / "infra"})
        infra.state_dir.mkdir()
        infra_registry = Registry(infra.state_dir)
        try:
            for outcome in (postgres.up(infra, infra_registry, timeout=90), redis_server.up(infra, infra_registry)):
                if outcome.failed:
                    pytest.fail(f"the fault suite could not start {outcome.name}: {outcome.detail}", pytrace=False)
            migrate.upgrade(database_url)
            with testing.started_demo_stack(
                settings, root / "demo", landmarks=FAULT_LANDMARKS, negatives=FAULT_NEGATIVES, concurrency=CONCURRENCY
            ) as started:
                yield FaultStack(
                    started.stack, infra, started.model, started.engine, started.factory, started.minio, db_password
                )
        finally:
            redis_server.down(infra, infra_registry)
            postgres.down(infra, infra_registry)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def faults(request: pytest.FixtureRequest, fault_stack_session: FaultStack) -> Iterator[FaultStack]:
    """The session's stack; when the test failed, the tail of every process log goes to the report."""
    yield fault_stack_session
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        sys.stderr.write(f"\n===== logs of the fault stack =====\n{fault_stack_session.stack.logs()}\n")
