"""The SeaweedFS follower against a real `weed mini` (started by the devstack helper on free ports),
uploads made with the `minio` client and the cursor in the real PostgreSQL."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from minio import Minio
from minio.error import MinioException
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from devtools.stack import seaweed
from devtools.stack.registry import Registry
from devtools.stack.testing import private_seaweed
from shared.db.models import EventCursor
from shared.settings import Settings
from workers.bridge.cursor import CursorStore
from workers.bridge.runner import filer_grpc_address
from workers.bridge.subscriber import SeaweedSubscriber

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "photos"


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A private `weed mini` on free ports (never the dev one), stopped after the module."""
    state = tmp_path_factory.mktemp("weed-state")
    with private_seaweed(state, access_key="bridge-test", secret_key="bridge-test-secret") as settings:
        yield settings


@pytest.fixture
def s3(weed: Settings) -> Minio:
    return seaweed.client(weed.s3)


@pytest.fixture
def cursors(db_engine: Engine) -> Iterator[tuple[CursorStore, str]]:
    """A committed cursor under a name of its own in the test database, removed afterwards."""
    factory = sessionmaker(bind=db_engine, expire_on_commit=False)
    name = f"seaweedfs:test-{uuid.uuid4().hex[:8]}"
    yield CursorStore(factory), name
    with factory.begin() as db:
        db.execute(delete(EventCursor).where(EventCursor.name == name))


class Follower:
    """A SeaweedSubscriber in a thread, collecting the records under one key prefix."""

    def __init__(self, weed: Settings, cursors: tuple[CursorStore, str], prefix: str) -> None:
        self.prefix = prefix
        self.records: list[dict] = []
        self._lock = threading.Lock()
        store, name = cursors
        self.subscriber = SeaweedSubscriber(
            address=filer_grpc_address(weed.s3.endpoint, weed.seaweed.filer_grpc_port),
            dispatch=self._keep,
            cursors=store,
            cursor_name=name,
            start_window_s=120,
            checkpoint_interval_s=0.5,
        )
        self.thread = threading.Thread(target=self.subscriber.run, daemon=True)

    def _keep(self, record: dict) -> None:
        if record["s3"]["object"]["key"].startswith(self.prefix):
            with self._lock:
                self.records.append(record)

    def seen(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(r["eventName"], r["s3"]["object"]["key"]) for r in self.records]

    def wait_for(self, expected: tuple[str, str], timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for record in self.records:
                    if (record["eventName"], record["s3"]["object"]["key"]) == expected:
                        return record
            time.sleep(0.05)
        raise AssertionError(f"no {expected} within {timeout}s; got {self.seen()}")

    def __enter__(self) -> Follower:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.subscriber.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the subscriber did not stop"


def _put(s3: Minio, key: str, data: bytes, **kwargs) -> str:
    return s3.put_object(BUCKET, key, io.BytesIO(data), len(data), **kwargs).etag


def _put_when_writable(s3: Minio, key: str, data: bytes, timeout: float = 60.0) -> None:
    """Right after a restart weed's S3 answers before its volume server re-registered: writes time out a while."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _put(s3, key, data)
            return
        except (OSError, MinioException, urllib3.exceptions.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


CREATED, REMOVED = "s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"


def test_uploads_become_created_records_with_decoded_keys_and_metadata(weed, s3, cursors) -> None:
    prefix = f"t-{uuid.uuid4().hex[:6]}/"
    with Follower(weed, cursors, prefix) as follower:
        key = prefix + "users/al ice/IMG 1%+#.jpg"
        etag = _put(s3, key, b"\xff\xd8 jpeg", content_type="image/jpeg", metadata={"x-amz-meta-user": "alice"})
        unicode_key = prefix + "café/東京 タワー.jpg"
        _put(s3, unicode_key, b"\xff\xd8 other", content_type="image/jpeg")
        record = follower.wait_for((CREATED, key))
        follower.wait_for((CREATED, unicode_key))
    obj = record["s3"]["object"]
    assert record["s3"]["bucket"]["name"] == BUCKET and record["eventSource"] == "seaweedfs:filer"
    assert obj["userMetadata"] == {"user": "alice"}
    assert obj["eTag"] == etag and obj["size"] == len(b"\xff\xd8 jpeg") and obj["contentType"] == "image/jpeg"
    assert all(not k.endswith("/") for _, k in follower.seen())  # no directory records
    assert follower.seen().count((CREATED, key)) == 1


def test_resumes_from_the_stored_cursor_after_a_stop(weed, s3, cursors) -> None:
    store, name = cursors
    prefix = f"r-{uuid.uuid4().hex[:6]}/"
    with Follower(weed, cursors, prefix) as first:
        _put(s3, prefix + "before.jpg", b"1")
        first.wait_for((CREATED, prefix + "before.jpg"))
    stored = store.load(name)
    assert stored is not None

    _put(s3, prefix + "while-down.jpg", b"2")  # nobody follows now

    with Follower(weed, cursors, prefix) as second:
        second.wait_for((CREATED, prefix + "while-down.jpg"))
        _put(s3, prefix + "after.jpg", b"3")
        second.wait_for((CREATED, prefix + "after.jpg"))
    assert (CREATED, prefix + "before.jpg") not in second.seen()  # not replayed: resumed after the cursor
    assert store.load(name) > stored


def test_delete_and_multipart_upload(weed, s3, cursors) -> None:
    prefix = f"m-{uuid.uuid4().hex[:6]}/"
    big = bytes(range(256)) * (6 * 1024 * 1024 // 256 + 1)  # > 5 MiB: two parts
    with Follower(weed, cursors, prefix) as follower:
        _put(s3, prefix + "gone.jpg", b"bye")
        follower.wait_for((CREATED, prefix + "gone.jpg"))
        s3.remove_object(BUCKET, prefix + "gone.jpg")
        removed = follower.wait_for((REMOVED, prefix + "gone.jpg"))
        etag = _put(s3, prefix + "big.bin", big, part_size=5 * 1024 * 1024)
        record = follower.wait_for((CREATED, prefix + "big.bin"))
        _put(s3, prefix + "marker.jpg", b"m")  # anything after the multipart, so its parts had time to show
        follower.wait_for((CREATED, prefix + "marker.jpg"))
    assert removed["s3"]["object"]["key"] == prefix + "gone.jpg"
    assert etag.endswith("-2") and record["s3"]["object"]["eTag"] == etag
    assert record["s3"]["object"]["size"] == len(big)
    assert [k for _, k in follower.seen() if "big" in k or ".uploads" in k] == [prefix + "big.bin"]


@pytest.mark.faults
def test_follows_again_after_the_filer_restarts(weed, s3, cursors) -> None:
    """Runs last in this module: it stops and restarts the module's `weed mini` (same ports and data)."""
    prefix = f"f-{uuid.uuid4().hex[:6]}/"
    registry = Registry(Path(weed.state_dir))
    with Follower(weed, cursors, prefix) as follower:
        _put(s3, prefix + "before.jpg", b"1")
        follower.wait_for((CREATED, prefix + "before.jpg"))
        assert not seaweed.down(weed, registry).failed
        time.sleep(1.0)  # the follower sees the stream break and retries with backoff
        outcome = seaweed.up(weed, registry, timeout=90)
        assert not outcome.failed, outcome.detail
        _put_when_writable(seaweed.client(weed.s3), prefix + "after-restart.jpg", b"2")
        follower.wait_for((CREATED, prefix + "after-restart.jpg"), timeout=60)
    assert follower.seen().count((CREATED, prefix + "before.jpg")) == 1
