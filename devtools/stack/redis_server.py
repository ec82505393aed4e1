"""Redis, the Celery broker: reuse one answering at `broker_url`, else run redis-server as our own child."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from devtools.stack import lifecycle, packages
from devtools.stack.addresses import host_port, is_local
from devtools.stack.outcome import Outcome
from devtools.stack.readiness import Answers
from devtools.stack.registry import Registry
from shared.settings import Settings

NAME = "redis"
DEFAULT_PORT = 6379


def answers(url: str) -> bool:
    """True when a Redis server at `url` answers PING (with the URL's password and database)."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def server_argv(binary: str, port: int, data_dir: Path) -> list[str]:
    """Foreground redis-server on loopback, persisting into the state folder."""
    return [binary, "--bind", "127.0.0.1", "--port", str(port), "--daemonize", "no", "--dir", str(data_dir)]


def _binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        packages.apt_install("redis-server")
        found = shutil.which("redis-server")
    if found is None:
        raise packages.InstallError("redis-server is still not on PATH after installing redis-server")
    return found


def _address(settings: Settings) -> tuple[str, int, str]:
    host, port = host_port(settings.broker_url, DEFAULT_PORT)
    return host, port, f"{host}:{port}"


def status(settings: Settings, registry: Registry) -> Outcome:
    _, _, address = _address(settings)
    record = registry.live(NAME)
    if record is not None:
        return Outcome(NAME, "running", record.pid, address)
    return Outcome(NAME, "reused" if answers(settings.broker_url) else "stopped", None, address)


def up(settings: Settings, registry: Registry, *, timeout: float = 30.0) -> Outcome:
    host, port, address = _address(settings)
    record = registry.live(NAME)
    if record is not None:
        return Outcome(NAME, "already running", record.pid, address, f"already running (pid {record.pid})")
    if answers(settings.broker_url):
        return Outcome(NAME, "reused", None, address, "a Redis server already answers there")
    if not is_local(host):
        return Outcome(NAME, "failed", None, address, f"no Redis answers at {address} and it is not local")
    try:
        binary = _binary()
    except packages.InstallError as exc:
        return Outcome(NAME, "failed", None, address, str(exc))
    data_dir = Path(settings.state_dir) / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    return lifecycle.start(
        registry,
        NAME,
        server_argv(binary, port, data_dir),
        state_dir=settings.state_dir,
        ready=Answers("Redis answers PING", lambda: answers(settings.broker_url)),
        timeout=timeout,
        address=address,
    )


def down(settings: Settings, registry: Registry) -> Outcome:
    address = _address(settings)[2]
    if registry.read(NAME) is None and answers(settings.broker_url):
        return lifecycle.left_alone(NAME, address)
    return lifecycle.stop(registry, NAME, address=address)
