"""A real Celery worker process (the project's app, its signals and settings) on a Redis database and a
PostgreSQL database of its own: warm shutdown mid-task, JSON log lines, metrics, and `status --json`.

The worker runs one test task besides the project's: ``albums.slow_apply`` sleeps, then calls the real
``shared.photos.apply.apply_recognition``, so a SIGTERM reliably lands while a photo is being processed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from devtools.stack.testing import flushed_redis
from shared.db import migrate
from shared.db.models import (
    EventCursor,
    Landmark,
    ModelStatus,
    ModelVersion,
    Photo,
    PhotoStatus,
)
from shared.ops import jobs
from shared.photos import records as photos
from shared.photos.failures import record_failure
from shared.settings import Settings
from workers.celery_app import QUEUES, REPROCESS_PRIORITY, make_celery
from workers.fleet import send_recognitions
from workers.metrics import collect, metrics_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/11"  # a database of its own: no dev worker consumes it
NODE = f"opsalbums@{socket.gethostname()}"
CLI = "import typer; from workers.cli import ops as cli_ops; app = typer.Typer(); cli_ops.register(app); app()"
WORKER_APP = '''
"""The project's Celery app plus one slow task that does the albums worker's real database work."""
import time
import uuid

from shared.photos import apply
from tasks.context import context
from workers.celery_app import app


@app.task(name="albums.slow_apply", acks_late=True)
def slow_apply(photo_id, etag, model_version_id, outcome, delay_s):
    time.sleep(delay_s)
    with context().session() as session:
        return apply.apply_recognition(session, uuid.UUID(photo_id), etag, model_version_id, outcome)
'''
OUTCOME = {"matches": [{"landmark": "w_tower", "score": 0.9, "method": "global+verified", "verified": True}]}


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    with flushed_redis(BROKER) as client:
        yield client


@pytest.fixture
def database(make_scratch_database) -> Iterator[tuple[str, sessionmaker[Session]]]:
    """A committed database of its own (the worker is another process), with an active model and a landmark."""
    url = make_scratch_database(create=False)
    migrate.upgrade(url)
    engine = create_engine(url, poolclass=NullPool)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with factory.begin() as session:
        session.add(Landmark(slug="w_tower", name="Drawn Tower"))
        session.add(
            ModelVersion(
                version="w-active",
                backbone="efficientnet_lite2",
                status=ModelStatus.active,
                metrics={"top1": 0.9, "n_test": 40},
                activated_at=datetime(2024, 5, 1, tzinfo=UTC),
            )
        )
    yield url, factory
    engine.dispose()


@pytest.fixture
def env(tmp_path: Path, database) -> dict[str, str]:
    (tmp_path / "ops_worker_app.py").write_text(textwrap.dedent(WORKER_APP))
    url, _ = database
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
        "LANDMARKS_DATABASE_URL": url,
        "LANDMARKS_BROKER_URL": BROKER,
        "LANDMARKS_RESULT_BACKEND": BROKER,
        "LANDMARKS_STATE_DIR": str(tmp_path / "state"),
        "LANDMARKS_LOG_JSON": "true",
    }


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        celery = Path(sys.executable).parent / "celery"
        argv = [str(celery), "-A", "ops_worker_app", "worker", "-Q", "albums", "-n", "opsalbums@%h",
                "--concurrency", "1", "--loglevel", "INFO", "--without-heartbeat", "--without-mingle"]  # fmt: skip
        self.stderr = log.open("ab")
        self.process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True
        )

    def wait_ready(self, app: Celery, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"worker exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            if any(NODE in reply for reply in app.control.ping(destination=[NODE], timeout=1.0)):
                return
        pytest.fail(f"worker did not answer a ping in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def events(self) -> list[dict]:
        lines = [line for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [json.loads(line) for line in lines]

    def wait_for_event(self, timeout: float = 30.0, **fields: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if all(event.get(k) == v for k, v in fields.items()):
                    return event
            time.sleep(0.1)
        pytest.fail(f"no log line with {fields}:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown: the main process only
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.stderr.close()


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []

    def start() -> Worker:
        worker = Worker(env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start  # type: ignore[misc]
    for worker in started:
        worker.kill()


@pytest.fixture
def celery_app(broker: redis.Redis, tmp_path: Path) -> Iterator[Celery]:
    app = make_celery(Settings(broker_url=BROKER, result_backend=BROKER, state_dir=tmp_path / "client"))
    yield app
    app.close()


def new_photo(factory: sessionmaker[Session], key: str) -> str:
    with factory.begin() as session:
        result = photos.record_created(
            session, bucket="photos", key=key, etag="e1", size=1, content_type="image/jpeg", owner="walice"
        )
    return str(result.photo_id)


def status_of(factory: sessionmaker[Session], photo_id: str) -> PhotoStatus:
    with factory() as session:
        return session.get(Photo, uuid.UUID(photo_id)).status


def test_sigterm_mid_task_finishes_it_and_loses_nothing(database, workers, celery_app: Celery, broker, tmp_path):
    url, factory = database
    with factory() as session:
        version_id = session.query(ModelVersion.id).scalar()
    first, second = new_photo(factory, "users/walice/1.jpg"), new_photo(factory, "users/walice/2.jpg")
    worker = workers()
    worker.wait_ready(celery_app)
    for photo_id in (first, second):
        celery_app.send_task("albums.slow_apply", args=[photo_id, "e1", version_id, OUTCOME, 3.0])

    started = worker.wait_for_event(event="task_started", photo_id=first)
    assert started["queue"] == "albums" and started["task"] == "albums.slow_apply" and started["task_id"]
    assert worker.stop() == 0  # SIGTERM while the first photo is being processed: a warm shutdown

    assert status_of(factory, first) == PhotoStatus.done  # the running task finished
    assert status_of(factory, second) == PhotoStatus.pending  # not started: its message went back to Redis
    finished = [e for e in worker.events() if e.get("event") == "task_finished"]
    assert [(e["photo_id"], e["state"]) for e in finished] == [(first, "success")]
    assert finished[0]["task_id"] == started["task_id"] and finished[0]["queue"] == "albums"
    assert finished[0]["duration_ms"] >= 3000 and finished[0]["level"] == "info" and "timestamp" in finished[0]

    again = workers()
    again.wait_ready(celery_app)
    again.wait_for_event(event="task_finished", photo_id=second)
    assert again.stop() == 0
    assert status_of(factory, second) == PhotoStatus.done  # nothing lost
    assert broker.llen("albums") == 0 and broker.hlen("unacked") == 0

    # Both processes' children counted into the shared multiprocess folder.
    text = collect(metrics_dir(tmp_path / "state")).decode()
    assert 'landmarks_tasks_total{queue="albums",state="success",task="albums.slow_apply"} 2.0' in text
    assert 'landmarks_task_duration_seconds_count{queue="albums",task="albums.slow_apply"} 2.0' in text


def test_status_json_field_by_field(database, workers, env, celery_app: Celery, broker) -> None:
    url, factory = database
    with factory.begin() as session:
        for name in ("p1", "p2"):
            photos.record_created(session, bucket="photos", key=f"users/walice/{name}", etag="e", size=1,
                                  content_type=None, owner="walice")  # fmt: skip
        bad = photos.record_created(session, bucket="photos", key="users/walice/bad", etag="e", size=1,
                                    content_type=None, owner="walice")  # fmt: skip
        record_failure(session, task_name="recognition.recognize_photo", reason="decode_error", message="truncated",
                       photo_id=bad.photo_id)  # fmt: skip
        old = record_failure(session, task_name="ingest.object_event", reason="object_missing", message="gone",
                             bucket="photos", key="users/walice/old")  # fmt: skip
        old.created_at = session.execute(select(func.now())).scalar_one() - timedelta(hours=2)
        old.resolved_at = old.created_at
        gone = photos.record_created(session, bucket="photos", key="users/walice/gone", etag="e", size=1,
                                     content_type=None, owner="walice")  # fmt: skip
        photos.record_removed(session, bucket="photos", key="users/walice/gone")
        assert gone.photo_id
        now = session.execute(select(func.now())).scalar_one()
        position = int((now - timedelta(seconds=60)).timestamp() * 1e9)
        session.add(EventCursor(name="seaweedfs", position=position, updated_at=now - timedelta(seconds=30)))
    with factory.begin() as session:  # the ORM's onupdate must not move it: set it after the insert
        session.execute(update(EventCursor).values(updated_at=now - timedelta(seconds=30)))
    for _ in range(2):
        celery_app.send_task("recognition.recognize_photo", args=[str(uuid.uuid4())])
    celery_app.send_task("recognition.recognize_photo", args=[str(uuid.uuid4())], priority=REPROCESS_PRIORITY)
    celery_app.send_task("ingest.object_event", args=[{}])
    worker = workers()
    worker.wait_ready(celery_app)

    def status_json(*args: str) -> dict:
        run = subprocess.run([sys.executable, "-c", CLI, "status", "--json", *args], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    status = status_json()  # workers from their heartbeats in Redis
    assert status_json("--ping", "--ping-timeout", "2")["workers"] == status["workers"]  # the same as a ping

    assert set(status) == {"time", "broker", "workers", "queues", "unacked", "photos", "photos_approximate",
                           "reprocess_jobs", "failures", "model", "bridge"}  # fmt: skip
    assert status["broker"] == {"url": BROKER, "reachable": True, "error": None}
    assert status["workers"] == {"ingest": [], "recognize": [], "albums": [NODE], "cleaning": [], "training": []}
    assert list(status["queues"]) == list(QUEUES)
    assert status["queues"]["recognize"] == {"depth": 3, "by_priority": {"0": 2, "3": 0, "6": 0, "9": 1}}
    assert status["queues"]["ingest"] == {"depth": 1, "by_priority": {"0": 1, "3": 0, "6": 0, "9": 0}}
    assert all(status["queues"][q]["depth"] == 0 for q in ("albums", "cleaning", "training"))
    assert status["unacked"] == 0
    assert status["photos"] == {"pending": 2, "processing": 0, "done": 0, "failed": 1, "deleted": 1}
    assert status["photos_approximate"] is False and status["reprocess_jobs"] == []  # a small table: exact
    assert status["failures"] == {"last_hour": 1, "open": 1}
    model = status["model"]
    assert model["version"] == "w-active" and model["backbone"] == "efficientnet_lite2" and model["id"] > 0
    assert model["metrics"] == {"top1": 0.9, "n_test": 40}
    assert datetime.fromisoformat(model["activated_at"]) == datetime(2024, 5, 1, tzinfo=UTC)
    [bridge] = status["bridge"]
    assert bridge["name"] == "seaweedfs" and bridge["position"] == position
    assert 30 <= bridge["seconds_since_update"] < 3600
    assert 60 <= bridge["event_age_s"] < 3600
    assert (bridge["state"], bridge["lag_s"]) == ("idle", 0.0)  # a fresh heartbeat, no upload for a minute
    assert datetime.fromisoformat(status["time"]) >= now
    assert worker.stop() == 0
    assert status_json()["workers"]["albums"] == []  # a stopped worker deletes its heartbeat


def test_status_names_an_unreachable_broker_and_still_reports_the_database(env, database) -> None:
    dead = {**env, "LANDMARKS_BROKER_URL": "redis://127.0.0.1:1/0"}
    run = subprocess.run([sys.executable, "-c", CLI, "status", "--json"], cwd=REPO_ROOT, env=dead,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)
    assert status["broker"]["reachable"] is False and "redis://127.0.0.1:1/0" in status["broker"]["error"]
    assert status["workers"] is None and status["queues"] is None
    assert status["photos"]["pending"] == 0 and status["model"]["version"] == "w-active"


def test_reprocess_cli_dry_run_then_a_job(database, env, broker, celery_app: Celery) -> None:
    _, factory = database
    done = new_photo(factory, "users/walice/done.jpg")
    failed = new_photo(factory, "users/walice/failed.jpg")
    with factory.begin() as session:
        session.execute(update(Photo).where(Photo.id == uuid.UUID(done)).values(status=PhotoStatus.done))
        record_failure(session, task_name="recognition.recognize_photo", reason="corrupt", message="damaged",
                       photo_id=uuid.UUID(failed))  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", CLI, "reprocess", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    refused = cli()
    assert refused.returncode == 2 and "refusing to reprocess without a selector" in refused.stderr
    unknown = cli("--user", "nobody-here")
    assert unknown.returncode == 2 and "no user 'nobody-here'" in unknown.stderr
    dry = cli("--user", "walice", "--dry-run")
    assert dry.returncode == 0 and "would enqueue 2 photos" in dry.stdout
    assert broker.dbsize() == 0 and status_of(factory, failed) == PhotoStatus.failed

    real = cli("--user", "walice", "--since", "2000-01-01")
    assert real.returncode == 0, real.stderr
    job_id = int(re.search(r"reprocess job (\d+): 2 photos", real.stdout)[1])
    # The command only made the job and nudged the feeder (no ingest worker consumes it here): nothing to recognise
    # is queued until the feeder runs, as the beat-driven task does.
    assert broker.llen("ingest") == 1 and broker.llen("recognize\x06\x169") == 0
    listed = json.loads(cli("list", "--json").stdout)
    assert [(j["id"], j["state"], j["total"], j["enqueued"]) for j in listed] == [(job_id, "running", 2, 0)]

    assert cli("pause", str(job_id)).stdout.strip() == f"job {job_id}: paused"
    send = partial(send_recognitions, celery_app, priority=REPROCESS_PRIORITY)
    feed = partial(jobs.feed_all, factory, depth=lambda: 0, enqueue_for=lambda _priority: send, bound=100)
    assert feed() == []  # a paused job is not fed
    assert cli("resume", str(job_id)).returncode == 0
    [fed] = feed()
    assert (fed.job_id, fed.outcome, fed.sent) == (job_id, "finished", 2)
    assert broker.llen("recognize\x06\x169") == 2 and broker.llen("recognize") == 0
    assert status_of(factory, failed) == PhotoStatus.pending and status_of(factory, done) == PhotoStatus.done
    late = cli("cancel", str(job_id))
    assert late.returncode == 1 and "finished: cannot cancel" in late.stderr


def test_model_activate_with_reprocess_starts_a_stale_job(database, env, broker) -> None:
    _, factory = database
    new_photo(factory, "users/walice/never-recognised.jpg")  # no model version yet: stale for any active one
    run = subprocess.run([sys.executable, "-m", "workers.cli.main", "model", "activate", "w-active", "--reprocess"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert re.search(r"reprocess job \d+: 1 photos not yet recognised by w-active", run.stdout)
    # its metrics carry no open-set score (as a trained version's): the operator is told what that means
    assert "w-active has no open-set score" in " ".join(run.stdout.split())
    with factory() as session:
        [job] = jobs.list_jobs(session)
        assert (job.selector, job.total, job.state.value, job.enqueued) == ({"stale": True}, 1, "running", 0)
