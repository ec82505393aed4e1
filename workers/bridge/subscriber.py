"""Follow the SeaweedFS filer's metadata stream and dispatch object events, resuming from a durable cursor.

Delivery is at least once: the cursor is written only after the records of an event were dispatched, and the
stream is reopened from the last stored position after any failure (the ingest task is idempotent).

While connected the cursor is saved again every ``heartbeat_interval_s`` even when no event comes, so its
``updated_at`` tells `landmarks status` an idle bridge (a recent heartbeat, an old last event) from a stopped or
disconnected one (no heartbeat).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import structlog

from workers.bridge.cursor import Cursors
from workers.bridge.dispatch import Dispatch
from workers.bridge.sources.filer import MetadataStream, open_channel, subscribe_metadata
from workers.bridge.sources.seaweed import BUCKETS_DIR, events_from_metadata

log = structlog.get_logger("landmarks.bridge.seaweedfs")


class SeaweedSubscriber:
    """Runs in its own thread: :meth:`run` blocks until :meth:`stop` is called from another thread."""

    def __init__(
        self,
        *,
        address: str,
        dispatch: Dispatch,
        cursors: Cursors,
        cursor_name: str | None = None,
        buckets_dir: str = BUCKETS_DIR,
        bucket: str | None = None,
        start_window_s: float = 300.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        checkpoint_interval_s: float = 5.0,
        heartbeat_interval_s: float = 30.0,
        client_name: str = "landmarks-bridge",
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.address = address
        self.cursor_name = cursor_name or f"seaweedfs:{address}"
        self._dispatch = dispatch
        self._cursors = cursors
        self._buckets_dir = buckets_dir.rstrip("/")
        # The filer filters by path prefix: with one bucket named, a bulk write to another bucket (a gallery import,
        # model bundles) never reaches this process, so it cannot hold up the events of live uploads behind it.
        self._path_prefix = f"{self._buckets_dir}/{bucket}/" if bucket else self._buckets_dir + "/"
        self._start_window_ns = int(start_window_s * 1e9)
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._checkpoint_interval = checkpoint_interval_s
        self._heartbeat_interval = heartbeat_interval_s
        self._save_lock = threading.Lock()  # a heartbeat never writes back a position a checkpoint has passed
        self._client_name = client_name
        self._client_id = random.randint(1, 2**31 - 1)  # lets the filer drop our stale stream after a reconnect
        self._clock_ns = clock_ns
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._stream: MetadataStream | None = None
        self._stored: int | None = None  # position last written to the cursor store
        self._seen: int | None = None  # position of the last event fully handled

    def stop(self) -> None:
        """Ask :meth:`run` to return: cancels the open stream, so it returns promptly."""
        self._stopping.set()
        with self._lock:
            if self._stream is not None:
                self._stream.cancel()

    def start_position(self) -> int:
        """``since_ns`` for the first subscription: after the stored cursor, else "now minus the window"."""
        stored = self._cursors.load(self.cursor_name)
        self._stored = self._seen = stored
        if stored is not None:
            return stored + 1  # the filer replays from since_ns inclusive; its ts_ns strictly increase
        return self._clock_ns() - self._start_window_ns

    def run(self) -> None:
        since = self.start_position()
        log.info("seaweedfs.start", address=self.address, cursor=self.cursor_name, since_ns=since,
                 path_prefix=self._path_prefix)  # fmt: skip
        backoff = self._backoff_initial
        epoch = 0
        channel = open_channel(self.address)
        heartbeat = threading.Thread(target=self._heartbeat, name="bridge-heartbeat", daemon=True)
        heartbeat.start()
        try:
            while not self._stopping.is_set():
                epoch += 1
                try:
                    for handled in self._follow(channel, since, epoch):
                        since = handled + 1
                        backoff = self._backoff_initial
                    if not self._stopping.is_set():
                        log.warning("seaweedfs.stream_ended", address=self.address)
                except grpc.RpcError as exc:
                    if self._stopping.is_set():
                        break
                    log.warning("seaweedfs.disconnected", address=self.address, code=str(exc.code()),
                                detail=exc.details(), retry_in_s=backoff)  # fmt: skip
                except Exception:
                    if self._stopping.is_set():
                        break
                    log.exception("seaweedfs.dispatch_failed", address=self.address, retry_in_s=backoff)
                    since = (self._stored + 1) if self._stored is not None else since
                if self._stopping.wait(backoff):
                    break
                backoff = min(backoff * 2, self._backoff_max)
        finally:
            try:
                self._checkpoint()
            except Exception:  # PostgreSQL gone at shutdown: the next start replays from the stored cursor
                log.exception("seaweedfs.checkpoint_failed", cursor=self.cursor_name)
            channel.close()
            heartbeat.join(timeout=5)
            log.info("seaweedfs.stopped", address=self.address, position=self._stored)

    def _follow(self, channel: grpc.Channel, since: int, epoch: int) -> Iterator[int]:
        """Yield the ``ts_ns`` of each event once its records were dispatched."""
        stream = subscribe_metadata(
            channel,
            since_ns=since,
            path_prefix=self._path_prefix,
            client_name=self._client_name,
            client_id=self._client_id,
            client_epoch=epoch,
        )
        with self._lock:
            self._stream = stream
            if self._stopping.is_set():
                stream.cancel()
        last_checkpoint = time.monotonic()
        try:
            for response in stream:
                events = events_from_metadata(response, self._buckets_dir)
                for event in events:
                    self._dispatch(event.to_record())
                self._seen = response.ts_ns
                # Write at once after a dispatch; positions of dropped events only now and then.
                if events or time.monotonic() - last_checkpoint >= self._checkpoint_interval:
                    self._checkpoint()
                    last_checkpoint = time.monotonic()
                yield response.ts_ns
        finally:
            with self._lock:
                self._stream = None
            stream.cancel()

    def _checkpoint(self) -> None:
        with self._save_lock:
            if self._seen is not None and self._seen != self._stored:
                self._cursors.save(self.cursor_name, self._seen)
                self._stored = self._seen

    def _heartbeat(self) -> None:
        """Save the stored position again (its ``updated_at`` moves) while a stream is open, until stopped."""
        while not self._stopping.wait(self._heartbeat_interval):
            with self._lock:
                connected = self._stream is not None
            if not connected or self._stored is None:
                continue
            try:
                with self._save_lock:
                    self._cursors.save(self.cursor_name, self._stored)  # type: ignore[arg-type]
            except Exception:  # PostgreSQL away for a moment: the next beat tries again
                log.exception("seaweedfs.heartbeat_failed", cursor=self.cursor_name)
