"""The SeaweedFS follower against an in-process filer speaking the same gRPC service over a Unix socket.

The filer here is a real gRPC server (grpcio) with a scripted event log; the cursor store is an in-memory one
(the PostgreSQL store has its own integration test). No TCP: unit tests stay off the network.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from workers.bridge.sources.proto import filer_pb2, filer_pb2_grpc
from workers.bridge.subscriber import SeaweedSubscriber

T0 = 1_714_558_272_000_000_000


def _created(ts: int, key: str, bucket: str = "photos") -> filer_pb2.SubscribeMetadataResponse:
    directory, _, name = f"/buckets/{bucket}/{key}".rpartition("/")
    note = filer_pb2.EventNotification(new_parent_path=directory)
    note.new_entry.CopyFrom(filer_pb2.Entry(name=name, attributes=filer_pb2.FuseAttributes(file_size=3, md5=b"1")))
    return filer_pb2.SubscribeMetadataResponse(directory=directory, event_notification=note, ts_ns=ts)


def _directory(ts: int, name: str) -> filer_pb2.SubscribeMetadataResponse:
    note = filer_pb2.EventNotification(new_parent_path="/buckets/photos")
    note.new_entry.CopyFrom(filer_pb2.Entry(name=name, is_directory=True))
    return filer_pb2.SubscribeMetadataResponse(directory="/buckets/photos", event_notification=note, ts_ns=ts)


class ScriptedFiler(filer_pb2_grpc.SeaweedFilerServicer):
    """Replays its log from ``since_ns`` (inclusive, like weed), then holds the stream open.

    ``fail_first`` aborts the first N streams with UNAVAILABLE after sending ``fail_after`` events.
    """

    def __init__(self, log: list[filer_pb2.SubscribeMetadataResponse], fail_first: int = 0, fail_after: int = 0):
        self.log = log
        self.requests: list[filer_pb2.SubscribeMetadataRequest] = []
        self.fail_first = fail_first
        self.fail_after = fail_after

    def SubscribeMetadata(self, request, context) -> Iterator[filer_pb2.SubscribeMetadataResponse]:  # noqa: N802
        self.requests.append(request)
        failing = len(self.requests) <= self.fail_first
        sent = 0
        for event in self.log:
            if event.ts_ns >= request.since_ns and event.directory.startswith(request.path_prefix.rstrip("/")):
                if failing and sent == self.fail_after:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "filer restarting")
                yield event
                sent += 1
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "filer restarting")
        while context.is_active():
            time.sleep(0.01)


class MemoryCursors:
    def __init__(self, start: dict[str, int] | None = None) -> None:
        self.positions = dict(start or {})
        self.saves: list[int] = []

    def load(self, name: str) -> int | None:
        return self.positions.get(name)

    def save(self, name: str, position: int) -> None:
        self.positions[name] = position
        self.saves.append(position)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[ScriptedFiler], str]]:
    servers: list[grpc.Server] = []

    def start(filer: ScriptedFiler) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        filer_pb2_grpc.add_SeaweedFilerServicer_to_server(filer, server)
        address = f"unix:{tmp_path / f'filer{len(servers)}.sock'}"
        server.add_insecure_port(address)
        server.start()
        servers.append(server)
        return address

    yield start
    for server in servers:
        server.stop(grace=None)


class Following:
    """Run a subscriber in a thread; collect what it dispatches."""

    def __init__(self, subscriber_kwargs: dict) -> None:
        self.records: list[dict] = []
        self.fail_dispatches = subscriber_kwargs.pop("fail_dispatches", 0)
        self.subscriber = SeaweedSubscriber(dispatch=self._dispatch, backoff_initial_s=0.01, **subscriber_kwargs)
        self.thread = threading.Thread(target=self.subscriber.run, daemon=True)

    def _dispatch(self, record: dict) -> None:
        if self.fail_dispatches:
            self.fail_dispatches -= 1
            raise ConnectionError("broker refused")
        self.records.append(record)

    def keys(self) -> list[str]:
        return [r["s3"]["object"]["key"] for r in self.records]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.records) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.records) >= count, f"only {self.keys()} after {timeout}s"

    def __enter__(self) -> Following:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.subscriber.stop()
        self.thread.join(5)
        assert not self.thread.is_alive(), "stop() did not end run()"


LOG = [_created(T0 + 1, "a.jpg"), _directory(T0 + 2, "users"), _created(T0 + 3, "users/b.jpg")]


def test_resumes_after_the_stored_cursor_and_writes_it_after_dispatch(serve) -> None:
    filer = ScriptedFiler(LOG)
    cursors = MemoryCursors({"seaweedfs:test": T0 + 1})
    with Following({"address": serve(filer), "cursors": cursors, "cursor_name": "seaweedfs:test"}) as following:
        following.wait_for(1)
    assert following.keys() == ["users/b.jpg"]
    assert filer.requests[0].since_ns == T0 + 2  # after the stored position, never replaying it
    assert filer.requests[0].path_prefix == "/buckets/"
    assert cursors.positions["seaweedfs:test"] == T0 + 3


def test_first_start_replays_a_window_before_now(serve) -> None:
    filer = ScriptedFiler(LOG)
    cursors = MemoryCursors()
    kwargs = {"address": serve(filer), "cursors": cursors, "start_window_s": 60, "clock_ns": lambda: T0 + 60 * 10**9}
    with Following(kwargs) as following:
        following.wait_for(2)
    assert filer.requests[0].since_ns == T0
    assert following.keys() == ["a.jpg", "users/b.jpg"]
    assert following.records[0]["eventSource"] == "seaweedfs:filer"


def test_a_named_bucket_is_all_the_filer_sends(serve) -> None:
    """A bulk write to another bucket (here the gallery's) never reaches the bridge that follows the photos bucket."""
    log = [_created(T0 + 1, f"import/{n}.jpg", bucket="gallery") for n in range(50)] + [_created(T0 + 60, "c.jpg")]
    filer = ScriptedFiler(log)
    cursors = MemoryCursors({"c": T0})
    with Following({"address": serve(filer), "cursors": cursors, "cursor_name": "c", "bucket": "photos"}) as following:
        following.wait_for(1)
        time.sleep(0.2)
    assert filer.requests[0].path_prefix == "/buckets/photos/"
    assert following.keys() == ["c.jpg"]
    assert cursors.positions["c"] == T0 + 60


def test_reconnects_after_the_filer_drops_the_stream_without_loss_or_replay(serve) -> None:
    filer = ScriptedFiler(LOG, fail_first=2, fail_after=1)
    cursors = MemoryCursors({"c": T0})
    with Following({"address": serve(filer), "cursors": cursors, "cursor_name": "c"}) as following:
        following.wait_for(2)
    assert following.keys() == ["a.jpg", "users/b.jpg"]
    assert len(filer.requests) >= 3
    assert filer.requests[1].since_ns == T0 + 2  # resumed right after the last handled event
    assert [r.client_epoch for r in filer.requests[:3]] == [1, 2, 3]
    assert len({r.client_id for r in filer.requests}) == 1


def test_failed_dispatch_does_not_move_the_cursor_and_is_retried(serve) -> None:
    filer = ScriptedFiler(LOG)
    cursors = MemoryCursors({"c": T0})
    kwargs = {"address": serve(filer), "cursors": cursors, "cursor_name": "c", "fail_dispatches": 1}
    with Following(kwargs) as following:
        following.wait_for(2)
    assert following.keys() == ["a.jpg", "users/b.jpg"]
    assert filer.requests[1].since_ns == T0 + 1  # the event that failed is asked for again
    assert cursors.saves[0] == T0 + 1


def test_finds_the_filer_when_it_comes_back(tmp_path: Path) -> None:
    cursors = MemoryCursors({"c": T0})
    socket = tmp_path / "late.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    filer = ScriptedFiler(LOG)
    filer_pb2_grpc.add_SeaweedFilerServicer_to_server(filer, server)
    server.add_insecure_port(f"unix:{socket}")
    kwargs = {"address": f"unix:{socket}", "cursors": cursors, "cursor_name": "c"}
    try:
        with Following(kwargs) as following:
            time.sleep(0.3)  # several failed attempts: nobody listens yet
            assert following.records == [] and cursors.saves == []
            server.start()
            following.wait_for(2)
        assert following.keys() == ["a.jpg", "users/b.jpg"]
    finally:
        server.stop(grace=None)


def test_an_idle_connected_bridge_keeps_saving_its_position_as_a_heartbeat(serve) -> None:
    """No event for a while: the same position is saved again and again (its updated_at moves), never an older
    one, so `status` reads the bridge as idle rather than stopped."""
    filer = ScriptedFiler(LOG)
    cursors = MemoryCursors({"c": T0})
    kwargs = {"address": serve(filer), "cursors": cursors, "cursor_name": "c", "heartbeat_interval_s": 0.05}
    with Following(kwargs) as following:
        following.wait_for(2)
        deadline = time.monotonic() + 5
        while cursors.saves.count(T0 + 3) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert cursors.saves.count(T0 + 3) >= 4
    assert cursors.saves == sorted(cursors.saves)  # a beat never writes back a position already passed


def test_no_heartbeat_while_the_filer_is_away(tmp_path: Path) -> None:
    cursors = MemoryCursors({"c": T0})
    kwargs = {"address": f"unix:{tmp_path / 'nobody.sock'}", "cursors": cursors, "cursor_name": "c"}
    with Following({**kwargs, "heartbeat_interval_s": 0.02}):
        time.sleep(0.3)
    assert cursors.saves == []
