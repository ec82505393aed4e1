"""`dev up|down|status` against real processes: SeaweedFS, Redis, app processes, in a temporary state folder.

Every test uses its own state folder and free ports, so it never touches a dev stack that is running; servers
already answering at the default Postgres/Redis addresses are only ever reused, never stopped.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis as redis_client
from psycopg2 import sql

from devtools.stack import lifecycle, postgres, proc, seaweed, stack
from devtools.stack.apps import AppSpec
from devtools.stack.readiness import StaysAlive
from devtools.stack.registry import Registry
from shared.settings import S3Settings, SeaweedSettings, Settings

pytestmark = pytest.mark.integration

SYSTEM_DB_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/landmarks"
SYSTEM_REDIS_URL = "redis://127.0.0.1:6379/0"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Distinct free ports below 45000, so that port + 10000 (weed's derived S3 gRPC port) is valid and free."""
    rng = random.Random()
    chosen: list[int] = []
    while len(chosen) < count:
        port = rng.randrange(20_000, 45_000)
        clash = {port, port + seaweed.GRPC_OFFSET, port - seaweed.GRPC_OFFSET} & set(chosen)
        if not clash and port_free(port) and port_free(port + seaweed.GRPC_OFFSET):
            chosen.append(port)
    return chosen


def processes_mentioning(text: str) -> list[tuple[int, list[str]]]:
    """Live processes whose command line contains `text` (how we check that nothing of ours is left)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            argv = proc.cmdline(int(entry.name))
            info = proc.stat(int(entry.name))
            if info and not info.zombie and any(text in arg for arg in argv):
                found.append((int(entry.name), argv))
    return found


def assert_nothing_left(state_dir: Path, pgids: list[int]) -> None:
    assert processes_mentioning(str(state_dir)) == []
    for pgid in pgids:
        assert proc.group_members(pgid) == [], f"process group {pgid} still has processes"


def seaweed_settings(state_dir: Path) -> Settings:
    ports = free_ports(10)
    names = [
        "master_port", "master_grpc_port", "volume_port", "volume_grpc_port", "filer_port", "filer_grpc_port",
        "s3_port", "webdav_port", "admin_port", "admin_grpc_port",
    ]  # fmt: skip
    weed = SeaweedSettings(**dict(zip(names, ports, strict=False)))
    return Settings(state_dir=state_dir, seaweed=weed, s3=S3Settings(endpoint=f"127.0.0.1:{weed.s3_port}"))


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state folder whose processes are stopped whatever the test did."""
    path = tmp_path / "state"
    yield path
    registry = Registry(path)
    for name in registry.names():
        lifecycle.stop(registry, name, grace=2.0)


def test_seaweed_up_twice_then_down(state_dir: Path) -> None:
    settings = seaweed_settings(state_dir)

    (first,) = stack.up(settings, only=["s3"])
    assert first.state == "started", first.detail
    assert "photos" in first.detail

    client = seaweed.client(settings.s3)
    buckets = {b.name for b in client.list_buckets()}
    assert {settings.s3.photos_bucket, settings.s3.gallery_bucket, settings.s3.models_bucket} <= buckets
    with socket.create_connection(("127.0.0.1", settings.seaweed.filer_grpc_port), timeout=2):
        pass  # the filer's gRPC port, which the event bridge subscribes to
    identity = state_dir / "seaweed" / "s3-identities.json"
    assert identity.stat().st_mode & 0o077 == 0  # holds the secret key
    wrong = S3Settings(endpoint=settings.s3.endpoint, access_key="intruder")
    assert not seaweed.answers(wrong)

    (second,) = stack.up(settings, only=["s3"])
    assert second.state == "already running"
    assert second.pid == first.pid
    assert second.detail == f"already running (pid {first.pid})"

    statuses = {o.name: o for o in stack.status(settings, apps=[])}
    assert statuses["s3"].state == "running" and statuses["s3"].pid == first.pid

    record = Registry(state_dir).read("s3")
    assert record is not None
    (stopped,) = stack.down(settings, only=["s3"])
    assert stopped.state == "stopped" and stopped.pid == first.pid
    assert_nothing_left(state_dir, [record.pgid])
    assert Registry(state_dir).names() == []
    assert {o.name: o.state for o in stack.status(settings, apps=[])}["s3"] == "stopped"


def test_seaweed_restart_keeps_buckets_and_objects(state_dir: Path) -> None:
    settings = seaweed_settings(state_dir)
    assert stack.up(settings, only=["s3"])[0].state == "started"
    payload = b"kept across restarts"
    seaweed.client(settings.s3).put_object(settings.s3.photos_bucket, "a/b.txt", io.BytesIO(payload), len(payload))
    stack.down(settings, only=["s3"])

    (again,) = stack.up(settings, only=["s3"])
    assert again.state == "started", again.detail
    assert "created buckets" not in again.detail
    body = seaweed.client(settings.s3).get_object(settings.s3.photos_bucket, "a/b.txt")
    try:
        assert body.read() == payload
    finally:
        body.close()
        body.release_conn()


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """A database name on the system server that does not exist yet; dropped afterwards."""
    name = f"devstack_test_{uuid.uuid4().hex[:10]}"
    yield name
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    conn.close()


def test_running_postgres_and_redis_are_reused_never_stopped(state_dir: Path, scratch_database: str) -> None:
    target = postgres.Target.from_url(SYSTEM_DB_URL)
    assert postgres.answers(target), f"PostgreSQL must be running at {target.address} for this test"
    url = SYSTEM_DB_URL.rsplit("/", 1)[0] + f"/{scratch_database}"
    settings = Settings(state_dir=state_dir, database_url=url, broker_url=SYSTEM_REDIS_URL)

    pg, rd = stack.up(settings, only=["postgres", "redis"])
    assert (pg.state, pg.pid) == ("reused", None)
    assert f"created database {scratch_database}" in pg.detail
    assert (rd.state, rd.pid) == ("reused", None)
    conn = postgres.Target.from_url(url).connect(scratch_database)
    conn.close()

    again = stack.up(settings, only=["postgres", "redis"])
    assert [o.state for o in again] == ["reused", "reused"]
    assert "created database" not in again[0].detail

    outcomes = {o.name: o for o in stack.down(settings, only=["postgres", "redis"])}
    assert outcomes["postgres"].state == outcomes["redis"].state == "reused"
    assert "left running" in outcomes["postgres"].detail
    assert postgres.answers(target)
    assert redis_client.Redis.from_url(SYSTEM_REDIS_URL).ping()


def test_own_redis_on_a_free_port(state_dir: Path) -> None:
    (port,) = free_ports(1)
    url = f"redis://127.0.0.1:{port}/0"
    settings = Settings(state_dir=state_dir, broker_url=url)

    (started,) = stack.up(settings, only=["redis"])
    assert started.state == "started", started.detail
    assert redis_client.Redis.from_url(url).ping()
    assert stack.up(settings, only=["redis"])[0].state == "already running"

    record = Registry(state_dir).read("redis")
    assert record is not None
    assert stack.down(settings, only=["redis"])[0].state == "stopped"
    assert_nothing_left(state_dir, [record.pgid])


def sleeper(name: str, state_dir: Path, code: str = "import time; time.sleep(120)") -> AppSpec:
    """A stand-in app; the state folder in its argv lets `assert_nothing_left` find it in /proc."""
    return AppSpec(name, (sys.executable, "-c", code, str(state_dir)), ready=StaysAlive(0.5))


SPAWNS_CHILD = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"  # noqa: E501


def test_app_processes_start_once_and_stop_with_their_children(state_dir: Path) -> None:
    settings = Settings(state_dir=state_dir)
    apps = [sleeper("one", state_dir), sleeper("parent", state_dir, SPAWNS_CHILD)]

    first = stack.up(settings, only=["one", "parent"], apps=apps)
    assert [o.state for o in first] == ["started", "started"], [o.detail for o in first]
    second = stack.up(settings, only=["one", "parent"], apps=apps)
    assert [o.state for o in second] == ["already running", "already running"]
    assert [o.pid for o in second] == [o.pid for o in first]
    assert (state_dir / "logs" / "one.log").exists()

    registry = Registry(state_dir)
    parent = registry.read("parent")
    assert parent is not None
    assert len(proc.group_members(parent.pgid)) == 2  # the app and the child it spawned
    pgids = [r.pgid for r in (registry.read("one"), parent) if r is not None]

    outcomes = stack.down(settings, apps=apps)  # a full down: also infra, which here was never ours
    by_name = {o.name: o for o in outcomes}
    assert by_name["one"].state == by_name["parent"].state == "stopped"
    assert by_name["postgres"].state in ("reused", "stopped")
    assert_nothing_left(state_dir, pgids)
    assert registry.names() == []


def test_failing_app_reports_its_log_and_exits_nonzero_state(state_dir: Path) -> None:
    settings = Settings(state_dir=state_dir)
    boom = sleeper("boom", state_dir, "import sys; print('boom: missing module', flush=True); sys.exit(3)")

    (outcome,) = stack.up(settings, only=["boom"], apps=[boom])
    assert outcome.state == "failed"
    assert "exited during start-up" in outcome.detail
    assert "boom: missing module" in outcome.detail
    assert Registry(state_dir).names() == []


def test_unknown_program_fails_clearly(state_dir: Path) -> None:
    settings = Settings(state_dir=state_dir)
    missing = AppSpec("ghost", (str(state_dir / "no-such-program"),))

    (outcome,) = stack.up(settings, only=["ghost"], apps=[missing])
    assert outcome.state == "failed" and "cannot run" in outcome.detail


def test_stale_pid_file_is_replaced(state_dir: Path) -> None:
    settings = Settings(state_dir=state_dir)
    app = sleeper("one", state_dir)
    (first,) = stack.up(settings, only=["one"], apps=[app])
    registry = Registry(state_dir)
    record = registry.read("one")
    assert record is not None
    os.killpg(record.pgid, 9)
    while record.running():
        proc.reap(record.pid)
        time.sleep(0.05)

    assert {o.name: o.state for o in stack.status(settings, apps=[app])}["one"] == "stopped"
    (second,) = stack.up(settings, only=["one"], apps=[app])
    assert second.state == "started" and second.pid != first.pid


def test_term_ignoring_process_is_killed(state_dir: Path) -> None:
    settings = Settings(state_dir=state_dir)
    stubborn = sleeper(
        "stubborn", state_dir, "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    )
    assert stack.up(settings, only=["stubborn"], apps=[stubborn])[0].state == "started"
    registry = Registry(state_dir)
    record = registry.read("stubborn")
    assert record is not None

    outcome = lifecycle.stop(registry, "stubborn", grace=0.5)
    assert outcome.state == "stopped"
    assert_nothing_left(state_dir, [record.pgid])


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    landmarks = Path(sys.executable).parent / "landmarks"
    return subprocess.run([str(landmarks), "dev", *args], env=env, capture_output=True, text=True, timeout=120)


def test_cli_up_status_down(state_dir: Path) -> None:
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "LANDMARKS_STATE_DIR": str(state_dir),
        "LANDMARKS_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "COLUMNS": "200",
    }

    up = _cli(env, "up", "--only", "redis")
    assert up.returncode == 0, up.stdout + up.stderr
    again = _cli(env, "up", "--only", "redis")
    assert again.returncode == 0 and "already running (pid" in again.stdout

    rows = {row["name"]: row for row in json.loads(_cli(env, "status", "--json").stdout)}
    assert rows["redis"]["state"] == "running" and rows["redis"]["address"] == f"127.0.0.1:{port}"
    assert rows["worker-recognize"]["state"] == "stopped"

    bad = _cli(env, "up", "--only", "redis,nope")
    assert bad.returncode != 0 and "nope" in bad.stdout + bad.stderr

    down = _cli(env, "down", "--only", "redis")
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_mentioning(str(state_dir)) == []


def test_cli_exits_nonzero_when_a_service_fails(state_dir: Path) -> None:
    """An S3 endpoint whose port differs from the one weed would serve cannot be started: say so, exit 1."""
    (port,) = free_ports(1)
    env = {**os.environ, "LANDMARKS_STATE_DIR": str(state_dir), "LANDMARKS_S3__ENDPOINT": f"127.0.0.1:{port}",
           "COLUMNS": "200"}  # fmt: skip

    result = _cli(env, "up", "--only", "s3")
    assert result.returncode == 1
    assert "differs from seaweed.s3_port" in result.stdout


@pytest.fixture
def open_state_dir() -> Iterator[Path]:
    """A state folder the `postgres` OS user can enter (pytest's tmp_path lies under a root-only folder)."""
    path = Path(tempfile.mkdtemp(prefix="devstack-pg-"))
    path.chmod(0o755)
    yield path
    registry = Registry(path)
    for name in registry.names():
        lifecycle.stop(registry, name, grace=5.0)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_own_postgres_cluster_on_a_free_port(open_state_dir: Path) -> None:
    if postgres.find_bindir() is None:
        pytest.skip("PostgreSQL server binaries are not installed (dev up would apt-get install them)")
    (port,) = free_ports(1)
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/devstack_own"
    settings = Settings(state_dir=open_state_dir, database_url=url)

    (started,) = stack.up(settings, only=["postgres"])
    assert started.state == "started", started.detail
    assert "created database devstack_own" in started.detail
    conn = postgres.Target.from_url(url).connect("devstack_own")
    with conn, conn.cursor() as cur:
        cur.execute("SHOW unix_socket_directories")
        assert cur.fetchone() == (str(open_state_dir / "postgres" / "run"),)
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone() == ("127.0.0.1",)
    conn.close()
    data = open_state_dir / "postgres" / "data"
    if os.geteuid() == 0:
        assert data.stat().st_uid == pwd.getpwnam("postgres").pw_uid

    (again,) = stack.up(settings, only=["postgres"])
    assert again.state == "already running" and again.pid == started.pid
    assert {o.name: o for o in stack.status(settings, apps=[])}["postgres"].state == "running"

    record = Registry(open_state_dir).read("postgres")
    assert record is not None
    (stopped,) = stack.down(settings, only=["postgres"])
    assert stopped.state == "stopped" and stopped.pid == started.pid
    assert_nothing_left(open_state_dir, [record.pgid])
    assert not (data / "postmaster.pid").exists()  # a clean shutdown, not a kill
