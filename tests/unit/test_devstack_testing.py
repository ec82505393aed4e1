"""The isolated-stack helper's parts: a child process must read back exactly the parent's settings; a private
Redis (for tests that restart the broker) keeps its data across a restart."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from devtools.stack import seaweed
from devtools.stack.testing import free_ports, isolated_settings, private_redis, settings_env, worker_app
from shared.settings import Settings


def test_settings_survive_the_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = isolated_settings(
        tmp_path, database_url="postgresql+psycopg2://u:p@db.example:5433/e2e", redis_url="redis://127.0.0.1:6379/12"
    )
    env = settings_env(settings)
    assert env["LANDMARKS_S3__SECRET_KEY"] == settings.s3.secret_key.get_secret_value()  # revealed, not "****"
    assert env["LANDMARKS_LOG_JSON"] == "true"
    for key in [k for k in os.environ if k.startswith("LANDMARKS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    assert Settings() == settings


def test_isolated_settings_use_free_ports_and_buckets_of_their_own(tmp_path: Path) -> None:
    one = isolated_settings(tmp_path, database_url="postgresql+psycopg2://postgres@h/a", redis_url="redis://h/3")
    two = isolated_settings(tmp_path, database_url="postgresql+psycopg2://postgres@h/a", redis_url="redis://h/3")
    assert one.s3.photos_bucket != two.s3.photos_bucket
    assert one.s3.endpoint == f"127.0.0.1:{one.seaweed.s3_port}"
    assert isinstance(one.webhook_token, SecretStr) and one.webhook_token != two.webhook_token
    assert Settings().s3.photos_bucket not in {one.s3.photos_bucket, two.s3.photos_bucket}


def test_free_ports_are_bindable_with_the_s3_grpc_offset() -> None:
    ports = free_ports(3, also_free_at=seaweed.GRPC_OFFSET)
    assert len(set(ports)) == 3
    for port in ports + [p + seaweed.GRPC_OFFSET for p in ports]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_workers_get_node_names_of_their_own(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path, database_url="postgresql+psycopg2://postgres@h/a", redis_url="redis://h/3")
    app = worker_app(settings, "recognize", 1, "abc123", {"OMP_NUM_THREADS": "1"})
    assert app.address == f"recognize-abc123@{socket.gethostname()}"
    assert app.argv[app.argv.index("-n") + 1] == app.address and "-Q" in app.argv
    assert app.env == {"OMP_NUM_THREADS": "1"}


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_a_private_redis_keeps_queued_messages_across_a_restart(tmp_path: Path) -> None:
    """What the e2e job test restarts: a server of its own on a free port whose list survives the restart."""
    with private_redis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(f"{server.url}/3")
        client.lpush("recognize", "a", "b")
        before = client.info("server")["run_id"]
        server.restart()
        assert client.info("server")["run_id"] != before  # a new process
        assert client.lrange("recognize", 0, -1) == [b"b", b"a"]
        client.close()
    assert server.process is None
