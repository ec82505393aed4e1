"""Run the bridge's sources side by side in threads and stop them together on a signal.

The webhook (uvicorn) and the SeaweedFS subscriber (a blocking gRPC stream) each get a thread; the main
thread only waits for the stop event that the SIGTERM/SIGINT handlers set, then stops both and joins them.
"""

from __future__ import annotations

import contextlib
import threading
import time

import structlog
import uvicorn
from fastapi import FastAPI

from workers.bridge.subscriber import SeaweedSubscriber

log = structlog.get_logger("landmarks.bridge")

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def split_endpoint(endpoint: str) -> tuple[str, int | None]:
    """``127.0.0.1:8333`` -> ``("127.0.0.1", 8333)`` (an S3 endpoint is host[:port], without a scheme)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        return endpoint, None
    return host.strip("[]"), int(port)


def is_local_seaweed(s3_endpoint: str, seaweed_s3_port: int) -> bool:
    """Whether the configured S3 endpoint is the local SeaweedFS (only then is there a filer to follow)."""
    host, port = split_endpoint(s3_endpoint)
    return host in LOCAL_HOSTS and port == seaweed_s3_port


def filer_grpc_address(s3_endpoint: str, filer_grpc_port: int) -> str:
    """The filer's gRPC address on the host that serves S3."""
    host, _ = split_endpoint(s3_endpoint)
    return f"[{host}]:{filer_grpc_port}" if ":" in host else f"{host}:{filer_grpc_port}"


class WebhookServer:
    """uvicorn in a worker thread (where it installs no signal handlers: the main thread owns those)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.address = f"{host}:{port}"
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="bridge-webhook", daemon=True)

    def _serve(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind; start() reports it
            self._server.run()

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the webhook could not listen on {self.address} (port in use?)")
            time.sleep(0.05)
        log.info("webhook.listening", address=self.address)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


class SubscriberThread:
    def __init__(self, subscriber: SeaweedSubscriber) -> None:
        self.subscriber = subscriber
        self._thread = threading.Thread(target=subscriber.run, name="bridge-seaweedfs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self.subscriber.stop()
        self._thread.join(timeout)


def run_until_stopped(
    stop: threading.Event,
    *,
    webhook: WebhookServer | None = None,
    subscriber: SubscriberThread | None = None,
    poll_s: float = 0.5,
) -> int:
    """Start the given sources, wait for ``stop`` (or a source dying), stop them all; 0 = clean stop."""
    sources = [source for source in (webhook, subscriber) if source is not None]
    if not sources:
        raise ValueError("no event source to run")
    started = []
    code = 0
    try:
        for source in sources:
            source.start()
            started.append(source)
        while not stop.wait(poll_s):
            if not all(source.alive() for source in started):
                log.error("bridge.source_died")
                code = 1
                break
    finally:
        for source in reversed(started):
            source.stop()
        log.info("bridge.stopped", code=code)
    return code
