"""An isolated running stack for end-to-end tests and benchmarks, beside (never touching) a dev stack.

It gets a database of its own (upgraded to head), a Redis database number nobody uses, `weed mini` on free ports
in its own state folder with buckets of its own, and the real app processes (Celery workers, the event bridge)
started as subprocesses whose ``LANDMARKS_*`` environment points at all of that. Tests
(``tests/integration/conftest.py``) and ``bench/bench_pipeline.py`` share it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel, SecretStr
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from devtools.stack import lifecycle, process, seaweed
from devtools.stack.apps import celery
from devtools.stack.outcome import Outcome
from devtools.stack.readiness import CeleryPing, Probe, StaysAlive
from devtools.stack.registry import Registry
from shared.settings import S3Settings, SeaweedSettings, Settings

REDIS_CLAIM_KEY = "landmarks:isolated-stack:claim"
REDIS_CANDIDATE_DBS = tuple(range(15, 5, -1))  # high numbers first: dev stacks use 0 and 1
SEAWEED_PORT_FIELDS = (
    "master_port", "master_grpc_port", "volume_port", "volume_grpc_port", "filer_port", "filer_grpc_port",
    "webdav_port", "admin_port", "admin_grpc_port",
)  # fmt: skip
DEFAULT_CONCURRENCY = {"ingest": 2, "recognize": 1, "albums": 1}


class StackError(RuntimeError):
    """The isolated stack could not be set up; the message names the service and says why."""


# --- free resources ------------------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, also_free_at: int = 0) -> list[int]:
    """Distinct ports the OS reports free; with ``also_free_at`` port + offset must be free too (weed's S3 gRPC)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port in ports or port + also_free_at > 65535 or (also_free_at and not _port_free(port + also_free_at)):
            continue
        ports.append(port)
    return ports


def claim_redis_db(server_url: str = "redis://127.0.0.1:6379", candidates: Iterable[int] = REDIS_CANDIDATE_DBS) -> str:
    """The URL of an empty Redis database, claimed with a key so a concurrent run picks another one."""
    token = uuid.uuid4().hex
    for db in candidates:
        client = redis.Redis.from_url(f"{server_url}/{db}")
        try:
            if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, token, nx=True, ex=6 * 3600):
                return f"{server_url}/{db}"
        except redis.RedisError as exc:
            raise StackError(f"Redis at {server_url} is unreachable: {exc}") from exc
        finally:
            client.close()
    raise StackError(f"no empty Redis database among {list(candidates)} at {server_url}")


@dataclass
class PrivateRedis:
    """A redis-server of one test's own, for tests that restart Redis (the shared server must never be restarted).

    Its data is an append-only file fsynced on every write under ``data_dir``, so a restart keeps every queued
    message, as a production broker with persistence does.
    """

    binary: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
        ]  # fmt: skip
        with (self.data_dir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():  # answers only once the append-only file is loaded
                        return
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.ConnectionError as exc:
                    if self.process.poll() is not None:
                        raise StackError(f"redis-server exited with {self.process.returncode}: see {log.name}") from exc
                if time.monotonic() > deadline:
                    raise StackError(f"redis-server on port {self.port} did not answer within {timeout:g} s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (Redis flushes the append-only file and exits), SIGKILL after ``grace``."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def private_redis(data_dir: Path) -> Iterator[PrivateRedis]:
    """A running :class:`PrivateRedis` on a free port, stopped on exit whatever happened."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server is not installed (Debian: apt-get install redis-server)")
    server = PrivateRedis(binary, free_ports(1)[0], Path(data_dir))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def flushed_redis(url: str) -> Iterator[redis.Redis]:
    """A client of the Redis database at ``url``, emptied before and after; a clear error when Redis is down."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        raise StackError(f"Redis at {url} is unreachable ({exc}): start it with `landmarks dev up`") from exc
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


def release_redis_db(url: str) -> None:
    """Empty the claimed database (broker queues, results, the claim itself)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def create_database(server_url: str, prefix: str = "landmarks_e2e") -> str:
    """A new database ``<prefix>_<hex>`` on the server of ``server_url``, migrated to head; returns its URL."""
    from shared.db import migrate

    url = make_url(server_url).set(database=f"{prefix}_{uuid.uuid4().hex[:10]}").render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
    except migrate.DatabaseUnavailableError as exc:
        raise StackError(str(exc)) from exc
    return url


def drop_database(url: str) -> None:
    engine = create_engine(make_url(url).set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            name = conn.dialect.identifier_preparer.quote(make_url(url).database or "")
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        engine.dispose()


# --- settings -> child environment ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-ready copy with secrets revealed (a child needs the real values)."""
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as a ``LANDMARKS_*`` variable (nested models with ``__``, containers as JSON, as
    pydantic-settings reads them), so a child process reads exactly these settings."""
    env: dict[str, str] = {}

    def put(prefix: str, model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            key = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                put(f"{key}__", value)
            elif value is None:
                continue
            elif isinstance(value, bool):
                env[key] = "true" if value else "false"
            elif isinstance(value, dict | list | tuple | set | frozenset):
                env[key] = json.dumps(_plain(value))
            else:
                env[key] = str(_plain(value))

    put("LANDMARKS_", settings)
    return env


@contextlib.contextmanager
def private_seaweed(state_dir: Path, **s3_fields: Any) -> Iterator[Settings]:
    """A `weed mini` of the caller's own on free ports (never the dev one), stopped on exit.

    ``s3_fields`` are S3Settings fields (keys, bucket names); the yielded settings point at this server.
    """
    [s3_port] = free_ports(1, also_free_at=seaweed.GRPC_OFFSET)
    ports = dict(zip(SEAWEED_PORT_FIELDS, free_ports(len(SEAWEED_PORT_FIELDS)), strict=True))
    settings = Settings(
        state_dir=state_dir,
        s3=S3Settings(endpoint=f"127.0.0.1:{s3_port}", **s3_fields),
        seaweed=SeaweedSettings(s3_port=s3_port, **ports),
    )
    registry = Registry(Path(state_dir))
    try:
        outcome = seaweed.up(settings, registry, timeout=90)
        if outcome.failed:
            raise StackError(f"could not start SeaweedFS (weed mini): {outcome.detail}")
        yield settings
    finally:
        seaweed.down(settings, registry)


def isolated_settings(state_dir: Path, *, database_url: str, redis_url: str, log_level: str = "INFO") -> Settings:
    """Settings for a stack of its own: weed on free ports, buckets and webhook port of its own."""
    [s3_port] = free_ports(1, also_free_at=seaweed.GRPC_OFFSET)
    ports = dict(zip(SEAWEED_PORT_FIELDS, free_ports(len(SEAWEED_PORT_FIELDS)), strict=True))
    [webhook_port] = free_ports(1)
    tag = uuid.uuid4().hex[:6]
    state_dir = Path(state_dir).resolve()
    return Settings(
        database_url=database_url,
        broker_url=redis_url,
        result_backend=redis_url,
        state_dir=state_dir,
        model_store=state_dir / "models",
        s3=S3Settings(
            endpoint=f"127.0.0.1:{s3_port}",
            access_key=f"e2e-{tag}",
            secret_key=SecretStr(f"e2e-secret-{uuid.uuid4().hex}"),
            photos_bucket=f"photos-{tag}",
            gallery_bucket=f"gallery-{tag}",
            models_bucket=f"models-{tag}",
        ),
        seaweed=SeaweedSettings(s3_port=s3_port, **ports),
        webhook_port=webhook_port,
        webhook_token=SecretStr(f"e2e-token-{uuid.uuid4().hex}"),
        log_level=log_level,
        log_json=True,
        reconcile_interval_s=24 * 3600.0,  # no beat runs here; the sweep is exercised by its own tests
    )


# --- app processes -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    name: str
    argv: tuple[str, ...]
    ready: Probe
    address: str = ""
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the settings' variables


def worker_app(settings: Settings, queue: str, concurrency: int, tag: str, env: Mapping[str, str] | None = None) -> App:
    """A Celery worker for one queue with a node name of its own (never confused with a dev stack's worker)."""
    node = f"{queue}-{tag}@{socket.gethostname()}"
    argv = celery(
        Path(sys.executable).parent, "worker", "-Q", queue, "-n", node,
        "--concurrency", str(concurrency), "--loglevel", settings.log_level, "--without-mingle", "--without-gossip",
    )  # fmt: skip
    return App(f"worker-{queue}", argv, CeleryPing(settings.broker_url, node), node, dict(env or {}))


def bridge_app(source: str = "seaweedfs") -> App:
    argv = (str(Path(sys.executable).parent / "landmarks"), "bridge", "run", "--source", source)
    return App(f"bridge-{source}", argv, StaysAlive(2.0))


@dataclass
class IsolatedStack:
    """A running `weed mini` plus app processes; ``start``/``stop`` single apps (a bridge restart, say)."""

    settings: Settings
    apps: dict[str, App] = field(default_factory=dict)

    @property
    def registry(self) -> Registry:
        return Registry(self.settings.state_dir)

    @property
    def env(self) -> dict[str, str]:
        return settings_env(self.settings)

    def start(self, *names: str, timeout: float = 90.0) -> None:
        """Launch the named apps together, then wait until each is ready; raises with the log tail if not."""
        launched = []
        for name in names:
            app = self.apps[name]
            if self.registry.live(name) is not None:
                continue
            env = {**self.env, **app.env}
            record = process.spawn(
                name, app.argv, log=self.log_path(name), env=env, cwd=self.settings.state_dir, address=app.address
            )
            self.registry.write(record)
            launched.append((app, record))
        problems = []
        for app, record in launched:
            outcome = lifecycle.settle(self.registry, record, app.ready, timeout)
            if outcome.failed:
                problems.append(f"{app.name}: {outcome.detail}")
        if problems:
            raise StackError("app processes failed to start:\n" + "\n".join(problems))

    def stop(self, *names: str, grace: float = 10.0) -> list[Outcome]:
        return [lifecycle.stop(self.registry, name, grace=grace) for name in names]

    def log_path(self, name: str) -> Path:
        return process.log_path(self.settings.state_dir, name)

    def logs(self, lines: int = 60) -> str:
        """The tail of every log of this stack (apps and weed), for a failing test's report."""
        parts = []
        for path in sorted((Path(self.settings.state_dir) / "logs").glob("*.log")):
            parts.append(f"----- {path.name} -----\n{process.log_tail(path, lines)}")
        return "\n".join(parts)

    def celery(self) -> Any:
        """A Celery app on this stack's broker (to send tasks as the bridge does)."""
        from workers.celery_app import make_celery

        return make_celery(self.settings)


@contextlib.contextmanager
def isolated_stack(
    settings: Settings,
    *,
    concurrency: Mapping[str, int] | None = None,
    bridges: Sequence[str] = ("seaweedfs",),
    worker_env: Mapping[str, Mapping[str, str]] | None = None,
    start: bool = True,
) -> Iterator[IsolatedStack]:
    """Start weed (buckets created) and the apps; everything started is stopped on exit, whatever happened.

    ``worker_env`` adds variables per queue (``{"recognize": {"OMP_NUM_THREADS": "1"}}``). The database and the
    Redis URL in ``settings`` must exist already (see :func:`create_database`,
    :func:`claim_redis_db`); they are the caller's to remove.
    """
    tag = uuid.uuid4().hex[:6]
    queues = dict(concurrency or DEFAULT_CONCURRENCY)
    stack = IsolatedStack(settings)
    for queue, n in queues.items():
        app = worker_app(settings, queue, n, tag, (worker_env or {}).get(queue))
        stack.apps[app.name] = app
    for source in bridges:
        app = bridge_app(source)
        stack.apps[app.name] = app
    registry = stack.registry
    try:
        outcome = seaweed.up(settings, registry, timeout=90)
        if outcome.failed:
            raise StackError(f"could not start SeaweedFS (weed mini): {outcome.detail}")
        if start:
            stack.start(*stack.apps)
        yield stack
    finally:
        for name in reversed(registry.names()):
            if name != seaweed.NAME:
                lifecycle.stop(registry, name, grace=10.0)
        seaweed.down(settings, registry)


# --- a small model from the demo data ------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoModel:
    data: Any  # devtools.demo_data.DemoData: the photos written (uploads included)
    landmarks: tuple[str, ...]  # slugs in the gallery
    negatives: int
    version: str


def build_demo_model(
    settings: Settings,
    work_dir: Path,
    *,
    landmarks: Sequence[str],
    negatives: int = 30,
    rcc_dir: Path | None = None,
    threads: int | None = None,
) -> DemoModel:
    """Demo photos into ``work_dir``; a gallery of ``landmarks`` plus ``negatives`` evenly chosen non-landmarks
    imported into the stack; a model built from it and activated (what `landmarks demo run` does, smaller)."""
    from devtools import demo_data
    from shared.db.session import make_engine, make_session_factory, session_scope
    from shared.gallery.catalog import import_rows
    from shared.gallery.manifest import read_eval_manifest
    from shared.imaging.decode import fit_for_resize
    from shared.model.factory import decode_side, embedder_from_settings
    from shared.recognition.whitening import whitening_options
    from shared.storage import ensure_buckets, make_minio
    from shared.versions.build import build_model

    upload_slugs = {expected for _, _, expected in demo_data.UPLOAD_MONUMENTS if expected}
    unknown = set(landmarks) - upload_slugs
    if unknown:
        raise ValueError(f"not demo landmarks with uploads: {sorted(unknown)}")
    # Only the monuments the uploads expect: writing all 49 galleries would take most of the time.
    subset = tuple(lm for lm in demo_data.load_demo_landmarks() if lm.slug in upload_slugs)
    data = demo_data.prepare_demo(rcc_dir or demo_data.DEFAULT_RCC_DIR, Path(work_dir), landmarks=subset)
    rows = read_eval_manifest(data.gallery_csv)
    chosen = [r for r in rows if r.is_landmark and r.landmark in set(landmarks)]
    others = [r for r in rows if not r.is_landmark]
    step = max(1, len(others) // max(1, negatives))
    chosen += others[::step][:negatives]

    s3 = settings.s3
    client = make_minio(s3.endpoint, s3.access_key, s3.secret_key.get_secret_value(), secure=s3.secure)
    ensure_buckets(client, [s3.gallery_bucket, s3.models_bucket])
    engine = make_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            import_rows(session, client, s3.gallery_bucket, chosen)
        rec = settings.recognition
        embedder = embedder_from_settings(rec, threads=threads)
        row = build_model(
            factory,
            client,
            embedder,
            models_bucket=s3.models_bucket,
            model_store=settings.model_store,
            min_side=decode_side(embedder.config),
            fit=fit_for_resize(embedder.config.resize, embedder.config.decode_fit),
            activate=True,
            rejection=rec.non_landmark_rejection,
            unknown_rejection=rec.unknown_rejection,  # as `landmarks model build` ships it
            whitening=whitening_options(rec.whitening_dim),
        )
    finally:
        engine.dispose()
    count = sum(1 for r in chosen if not r.is_landmark)
    return DemoModel(data, tuple(sorted(set(landmarks))), count, row.version)


@dataclass(frozen=True)
class StartedStack:
    """A running isolated stack with its demo model active, and the clients a test talks to it through."""

    stack: IsolatedStack
    model: DemoModel
    engine: Any  # sqlalchemy.Engine on the stack's database
    factory: Any  # sqlalchemy.orm.sessionmaker bound to ``engine``
    minio: Any  # minio.Minio on the stack's S3 server


@contextlib.contextmanager
def started_demo_stack(
    settings: Settings,
    demo_dir: Path,
    *,
    landmarks: Sequence[str],
    negatives: int,
    concurrency: Mapping[str, int] | None = None,
    worker_env: Mapping[str, Mapping[str, str]] | None = None,
    threads: int | None = None,
) -> Iterator[StartedStack]:
    """Weed up, a demo model of ``landmarks`` built and activated while the apps boot (the recognize worker loads
    the model on its first task); yields the stack with a database engine and an S3 client. The end-to-end,
    bad-input and fault suites and the pipeline benches all start their stack so.

    A model or an app that fails to come up writes every log's tail to stderr before the error goes on: the
    processes are stopped on exit, and their logs are the only trace of why.
    """
    from shared.db.session import make_engine, make_session_factory
    from shared.storage import make_minio

    with isolated_stack(settings, concurrency=concurrency, worker_env=worker_env, start=False) as stack:
        try:
            with ThreadPoolExecutor(max_workers=1) as boot:
                booted = boot.submit(stack.start, *stack.apps)
                model = build_demo_model(settings, demo_dir, landmarks=landmarks, negatives=negatives, threads=threads)
                booted.result()
        except Exception:
            sys.stderr.write(stack.logs())
            raise
        engine = make_engine(settings.database_url)
        s3 = settings.s3
        client = make_minio(s3.endpoint, s3.access_key, s3.secret_key.get_secret_value(), secure=s3.secure)
        try:
            yield StartedStack(stack, model, engine, make_session_factory(engine), client)
        finally:
            engine.dispose()


@contextlib.contextmanager
def isolated_resources(
    database_server: str, state_dir: Path, *, redis_server: str = "redis://127.0.0.1:6379", db_prefix: str
) -> Iterator[Settings]:
    """Settings for a stack in ``state_dir`` on a claimed empty Redis database and a new database (migrated to
    head) of the server at ``database_server``; both are emptied or dropped on exit, whatever happened."""
    redis_url = claim_redis_db(redis_server)
    database_url = ""
    try:
        database_url = create_database(database_server, prefix=db_prefix)
        yield isolated_settings(state_dir, database_url=database_url, redis_url=redis_url)
    finally:
        release_redis_db(redis_url)
        if database_url:
            drop_database(database_url)


def drawn_photo(kind: int, seed: int) -> Any:
    """A tiny synthetic photo for training tests (96 x 72, random background): kind 0 a red square, 1 a blue disc,
    2 a green triangle, anything else the background alone (a "no landmark" photo)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (96, 72), tuple(int(v) for v in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    if kind == 0:
        d.rectangle((20, 10, 70, 60), fill=(200, 40, 40))
    elif kind == 1:
        d.ellipse((15, 5, 80, 65), fill=(40, 40, 200))
    elif kind == 2:
        d.polygon([(48, 5), (10, 66), (86, 66)], fill=(40, 160, 40))
    return im


def drawn_manifest(folder: Path, landmarks: Mapping[str, int], *, train: int = 6, test: int = 2) -> Path:
    """An evaluation manifest of :func:`drawn_photo` photos in ``folder``: per landmark (slug -> drawn kind) and for
    the non-landmarks, ``train`` train and ``test`` test photos, each seed drawn once."""
    import csv

    rows = []
    seed = 0
    for slug, split, n in [(s, split, n) for s in (*landmarks, "") for split, n in (("train", train), ("test", test))]:
        for _ in range(n):
            seed += 1
            name = f"{slug or 'none'}-{seed}.jpg"
            drawn_photo(landmarks.get(slug, 3), seed).save(folder / name, "JPEG")
            rows.append(
                {
                    "path": name,
                    "kind": "landmark" if slug else "non_landmark",
                    "landmark_id": slug,
                    "landmark_name": slug,
                    "city": "Rome" if slug else "",
                    "country": "Italy" if slug else "",
                    "lat": "",
                    "lon": "",
                    "split": split,
                }
            )
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest
