"""The application processes `dev up` runs: one declarative table, so a later service is one more entry.

Each entry is a name, an argument vector, extra environment and a readiness probe. Celery workers get one
process per queue so a busy queue never starves another; their concurrency is the one table below.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devtools.stack.readiness import CeleryPing, PortOpen, Probe, StaysAlive
from shared.model.accelerator import micro_batch_prefetch
from shared.settings import DEFAULT_FLOWER_PASSWORD, FlowerSettings, Settings
from workers.metrics import DEFAULT_PORT as METRICS_PORT

CELERY_APP = "workers.celery_app"

# Pool processes per queue on a dev machine: ingest is I/O-bound, the rest hold a model or a lock. Recognize
# scales with processes of one torch thread each (LANDMARKS_RECOGNITION__WORKER_THREADS): one per core.
QUEUE_CONCURRENCY: dict[str, int] = {
    "ingest": 2,
    "recognize": max(1, min(4, os.cpu_count() or 1)),
    "albums": 1,
    "cleaning": 1,
    "training": 1,
}


@dataclass(frozen=True)
class AppSpec:
    name: str
    argv: tuple[str, ...]
    ready: Probe = field(default_factory=StaysAlive)
    env: Mapping[str, str] = field(default_factory=dict)
    address: str = ""


def celery(bin_dir: Path, *args: str) -> tuple[str, ...]:
    return (str(Path(bin_dir) / "celery"), "-A", CELERY_APP, *args)


def worker(settings: Settings, bin_dir: Path, queue: str, concurrency: int) -> AppSpec:
    """One Celery worker consuming one queue, ready when it answers a ping through the broker."""
    node = f"{queue}@{socket.gethostname()}"  # what Celery makes of "<queue>@%h"
    argv = celery(
        bin_dir, "worker", "-Q", queue, "-n", f"{queue}@%h",
        "--concurrency", str(concurrency), "--loglevel", settings.log_level,
    )  # fmt: skip
    if queue == "recognize":
        argv += recognize_prefetch(settings)
    return AppSpec(f"worker-{queue}", argv, ready=CeleryPing(settings.broker_url, node), address=node)


def recognize_prefetch(settings: Settings) -> tuple[str, ...]:
    """A micro-batching recognize worker (a GPU's by default) prefetches two batches per process, or its batches
    never fill; one that does not batch keeps the fleet's prefetch of 1 (see shared/model/accelerator.py)."""
    multiplier = micro_batch_prefetch(settings.recognition)
    return ("--prefetch-multiplier", str(multiplier)) if multiplier else ()


def app_specs(settings: Settings, bin_dir: Path) -> list[AppSpec]:
    """Workers (one per queue), beat, the event bridge, Flower and the metrics endpoint, in start order."""
    state = Path(settings.state_dir)
    specs = [worker(settings, bin_dir, queue, n) for queue, n in QUEUE_CONCURRENCY.items()]
    specs.append(
        AppSpec(
            "beat",
            celery(bin_dir, "beat", "--schedule", str(state / "celerybeat-schedule"), "--loglevel", settings.log_level),
            ready=StaysAlive(3.0),
        )
    )
    specs.append(AppSpec("bridge", (str(Path(bin_dir) / "landmarks"), "bridge", "run"), ready=StaysAlive(3.0)))
    flower = settings.flower
    specs.append(
        AppSpec(
            "flower",
            celery(bin_dir, "flower", "--address=127.0.0.1", f"--port={flower.port}"),
            ready=PortOpen("127.0.0.1", flower.port),
            # Flower reads FLOWER_<OPTION>; through the environment the password stays out of `ps` output.
            env={"FLOWER_BASIC_AUTH": f"{flower.user}:{flower.password.get_secret_value()}"},
            address=f"http://127.0.0.1:{flower.port}",
        )
    )
    specs.append(
        AppSpec(
            "api",  # the albums API and the album browser (workers/api)
            (str(Path(bin_dir) / "landmarks"), "api", "serve"),
            ready=PortOpen("127.0.0.1", settings.api_port),
            address=f"http://127.0.0.1:{settings.api_port}/docs",
        )
    )
    specs.append(
        AppSpec(
            "metrics",  # the workers' prometheus-client multiprocess files, summed (see workers.metrics)
            (str(Path(bin_dir) / "python"), "-m", "workers.metrics", "--port", str(METRICS_PORT)),
            ready=PortOpen("127.0.0.1", METRICS_PORT),
            address=f"http://127.0.0.1:{METRICS_PORT}/metrics",
        )
    )
    return specs


def flower_login(flower: FlowerSettings) -> str:
    """How to sign in to Flower, for `dev status`: the password itself only while it is still the default."""
    password = flower.password.get_secret_value()
    shown = f"password {password!r} (the default)" if password == DEFAULT_FLOWER_PASSWORD else (
        "the password in LANDMARKS_FLOWER__PASSWORD")  # fmt: skip
    return f"Flower http://127.0.0.1:{flower.port}: user {flower.user!r}, {shown}"
