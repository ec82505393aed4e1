"""Project metrics for Prometheus: task counts and durations, photos processed/recognised/failed, latency.

Celery's prefork children each count in their own process, so prometheus-client runs in multiprocess mode:
every process writes its values to files in ``<state_dir>/metrics`` (``PROMETHEUS_MULTIPROC_DIR``), and one
small HTTP endpoint (``landmarks metrics serve``, an app of ``landmarks dev up``) sums the files on each scrape,
and adds the fleet's gauges (queue depth, workers online, bridge lag, active model: :mod:`workers.fleet_metrics`).
Counters survive worker restarts (their files stay); delete the folder only while the whole fleet is stopped.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_PORT = 9464
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


def metrics_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "metrics"


def enable_multiprocess(directory: Path) -> None:
    """Write metrics to files in ``directory`` from now on; call in the worker's main process before it forks
    and before the first metric is made (prometheus-client picks its value class from the environment)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(directory)
    values.ValueClass = values.get_value_class()


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    tasks: Counter
    task_duration: Histogram
    photos_processed: Counter
    photos_recognized: Counter
    photos_failed: Counter
    recognition_latency: Histogram
    object_events: Counter
    album_writes: Counter

    def task_finished(self, *, task: str, queue: str, state: str, seconds: float | None) -> None:
        self.tasks.labels(task=task, queue=queue, state=state).inc()
        if seconds is not None:
            self.task_duration.labels(task=task, queue=queue).observe(seconds)

    def photo_outcome(self, result: Any, seconds: float | None) -> None:
        """Count what ``recognition.recognize_photo`` returned (``{"action": ..., ...}``)."""
        action = result.get("action") if isinstance(result, dict) else None
        if action == "recognized":
            self.photos_processed.labels(outcome="landmark" if result.get("landmark") else "no_landmark").inc()
            if result.get("landmark"):
                self.photos_recognized.inc()
        elif action == "failed":
            self.photos_processed.labels(outcome="failed").inc()
            self.photos_failed.labels(reason=str(result.get("reason") or "unknown")).inc()
        else:
            return  # skipped (deleted, already failed) or an error Celery retries: not a processed photo
        if seconds is not None:
            self.recognition_latency.observe(seconds)

    def object_event(self, result: Any) -> None:
        """Count what ``ingest.object_event`` did (``{"action": "recognize"}``: a new or changed upload)."""
        action = result.get("action") if isinstance(result, dict) else None
        self.object_events.labels(action=str(action or "unknown")).inc()

    def album_write(self, result: Any) -> None:
        """Count what ``albums.apply_recognition`` returned (``"applied"``: albums written; ``"stale"``: skipped)."""
        self.album_writes.labels(result=str(result or "unknown")).inc()


@cache
def metrics() -> Metrics:
    """The process's metrics, made on first use (in a pool child, after ``enable_multiprocess`` ran)."""
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        tasks=Counter(
            "landmarks_tasks", "Celery tasks finished, by task, queue and state", ["task", "queue", "state"],
            registry=registry,
        ),
        task_duration=Histogram(
            "landmarks_task_duration_seconds", "Celery task run time", ["task", "queue"],
            buckets=LATENCY_BUCKETS, registry=registry,
        ),
        photos_processed=Counter(
            "landmarks_photos_processed", "Photos recognised or failed, by outcome", ["outcome"], registry=registry
        ),
        photos_recognized=Counter(
            "landmarks_photos_recognized", "Photos recognised as a landmark", registry=registry
        ),
        photos_failed=Counter(
            "landmarks_photos_failed", "Photos that failed for good, by reason", ["reason"], registry=registry
        ),
        recognition_latency=Histogram(
            "landmarks_recognition_latency_seconds",
            "Fetch + decode + embed + decide of one photo (the recognize task's run time)",
            buckets=LATENCY_BUCKETS, registry=registry,
        ),
        object_events=Counter(
            "landmarks_object_events", "Storage events ingested, by what was done (recognize: a new or changed upload)",
            ["action"], registry=registry,
        ),
        album_writes=Counter(
            "landmarks_album_writes", "Recognitions applied to albums, by result (applied, stale)", ["result"],
            registry=registry,
        ),
    )  # fmt: skip


def collect(directory: Path) -> bytes:
    """The Prometheus text of every process that wrote to ``directory``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry)


def serve(
    directory: Path, host: str, port: int, stop: threading.Event | None = None, *, extra: Collector | None = None
) -> None:
    """Serve ``/metrics`` (the sum over ``directory``, plus ``extra``'s gauges, read per scrape) until
    SIGTERM/SIGINT or ``stop`` is set."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    if extra is not None:
        registry.register(extra)
    server, thread = start_http_server(port, addr=host, registry=registry)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
    """``python -m workers.metrics [--host H] [--port P]``: the endpoint `landmarks dev up` starts (the same as
    `landmarks metrics serve`, without needing the CLI)."""
    import argparse

    from shared.settings import get_settings
    from workers.fleet_metrics import FleetCollector, fleet_reader

    parser = argparse.ArgumentParser(prog="python -m workers.metrics", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    serve(metrics_dir(get_settings().state_dir), args.host, args.port, extra=FleetCollector(fleet_reader()))


if __name__ == "__main__":
    main()
