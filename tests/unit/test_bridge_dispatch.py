"""Dispatch through a real Celery app on kombu's in-memory broker, with the project's routes; runner helpers."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
import structlog

from shared.events import CREATED, ObjectEvent
from shared.settings import Settings
from workers.bridge.dispatch import INGEST_TASK, celery_dispatch, logged
from workers.bridge.runner import filer_grpc_address, is_local_seaweed, split_endpoint
from workers.celery_app import make_celery

EVENT = ObjectEvent(
    event_name=CREATED,
    bucket="photos",
    key="users/al ice/IMG 1.jpg",
    size=10,
    etag="abc",
    content_type="image/jpeg",
    user_metadata={"user": "alice"},
    event_time=datetime(2024, 5, 1, tzinfo=UTC),
    source="minio:s3",
)


def test_record_goes_to_the_ingest_queue_as_the_task_argument() -> None:
    app = make_celery(Settings(broker_url="memory://", result_backend="cache+memory://"))
    celery_dispatch(app)(EVENT.to_record())
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("ingest")
        message = queue.get(timeout=2)
        message.ack()
        queue.close()
    assert message.headers["task"] == INGEST_TASK == "ingest.object_event"
    args, kwargs, _ = message.decode()
    assert args == [EVENT.to_record()] and kwargs == {}
    assert ObjectEvent.from_record(args[0]) == EVENT


def test_logged_writes_one_json_line_after_the_dispatch() -> None:
    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out), processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()]
    )
    handed: list[dict] = []
    logged(handed.append, log)(EVENT.to_record())
    [line] = out.getvalue().splitlines()
    assert json.loads(line) == {
        "event": "event.dispatched",
        "level": "info",
        "event_name": CREATED,
        "source": "minio:s3",
        "bucket": "photos",
        "key": "users/al ice/IMG 1.jpg",
        "size": 10,
        "etag": "abc",
    }
    assert len(handed) == 1


def test_nothing_is_logged_when_the_dispatch_fails() -> None:
    out = io.StringIO()
    log = structlog.wrap_logger(structlog.PrintLogger(out), processors=[structlog.processors.JSONRenderer()])

    def refuse(record: dict) -> None:
        raise ConnectionError("no broker")

    with pytest.raises(ConnectionError):
        logged(refuse, log)(EVENT.to_record())
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("endpoint", "port", "local"),
    [
        ("127.0.0.1:8333", 8333, True),
        ("localhost:8333", 8333, True),
        ("127.0.0.1:9000", 8333, False),  # a local MinIO: no filer to follow
        ("s3.example.org:8333", 8333, False),
        ("s3.example.org", 8333, False),
    ],
)
def test_seaweedfs_is_followed_only_when_s3_is_the_local_weed(endpoint: str, port: int, local: bool) -> None:
    assert is_local_seaweed(endpoint, port) is local


def test_filer_address_is_on_the_s3_host() -> None:
    assert filer_grpc_address("127.0.0.1:8333", 18888) == "127.0.0.1:18888"
    assert filer_grpc_address("[::1]:8333", 18888) == "[::1]:18888"
    assert split_endpoint("[::1]:8333") == ("::1", 8333)
