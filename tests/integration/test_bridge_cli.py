"""`bridge run --source webhook` as a real process: a MinIO-style POST lands in the Redis ingest queue, one JSON
log line per event, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from shared.settings import Settings
from workers.celery_app import make_celery

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/14"  # a database of its own: no dev worker consumes it
TOKEN = "bridge-cli-test-token"
NOTIFICATION = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "photos/users/al%20ice/IMG+1.jpg",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventTime": "2024-05-01T10:11:12.345Z",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "photos"},
                "object": {
                    "key": "users%2Fal+ice%2FIMG+1.jpg",
                    "size": 10,
                    "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                    "contentType": "image/jpeg",
                    "userMetadata": {"X-Amz-Meta-User": "alice"},
                },
            },
        }
    ],
}


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = make_celery(Settings(broker_url=BROKER, result_backend=BROKER))
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        pytest.fail(f"Redis at {BROKER} is unreachable: {exc}", pytrace=False)
    app.control.purge()
    yield app
    app.control.purge()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    port = _free_port()
    env = {
        **os.environ,
        "LANDMARKS_BROKER_URL": BROKER,
        "LANDMARKS_RESULT_BACKEND": BROKER,
        "LANDMARKS_WEBHOOK_TOKEN": TOKEN,
        "LANDMARKS_LOG_JSON": "true",
    }
    log = tmp_path / "bridge.log"
    code = "from workers.cli.bridge import app; app(prog_name='landmarks bridge')"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "run", "--source", "webhook", "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the bridge did not listen on {port}:\n{log.read_text()}", pytrace=False)
                time.sleep(0.1)
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _post(port: int, body: bytes, token: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/events",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_webhook_event_reaches_the_ingest_queue_and_sigterm_stops(bridge, celery_app: Celery) -> None:
    proc, port, log = bridge
    assert _post(port, json.dumps(NOTIFICATION).encode(), "wrong") == 401
    assert _post(port, json.dumps(NOTIFICATION).encode(), TOKEN) == 200

    # The 200 came after the broker had it: the message is in Redis now, no waiting.
    with celery_app.connection_for_read() as connection:
        queue = connection.SimpleQueue("ingest")
        message = queue.get(timeout=1)
        message.ack()
        queue.close()
    assert message.headers["task"] == "ingest.object_event"
    [record] = message.decode()[0]
    assert record["s3"]["object"]["key"] == "users/al ice/IMG 1.jpg"
    assert record["s3"]["object"]["userMetadata"] == {"user": "alice"}

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    dispatched = [line for line in lines if line.get("event") == "event.dispatched"]
    assert [d["key"] for d in dispatched] == ["users/al ice/IMG 1.jpg"]
    assert any(line.get("event") == "bridge.stopped" for line in lines)


def test_unreachable_broker_is_a_clear_error() -> None:
    broker = f"redis://127.0.0.1:{_free_port()}/0"
    env = {**os.environ, "LANDMARKS_BROKER_URL": broker, "LANDMARKS_WEBHOOK_PORT": str(_free_port())}
    code = "from workers.cli.bridge import app; app(prog_name='landmarks bridge')"
    done = subprocess.run(
        [sys.executable, "-c", code, "run", "--source", "webhook"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"the Redis broker at {broker} is unreachable" in done.stderr
