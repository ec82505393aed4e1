"""Helpers the benches share: percentiles, reading the stack's process logs, CPU time of a process group.

The workers' logs are the source of per-stage times: the recognize task logs ``fetch_ms``, ``decode_ms`` and
``recognize_ms`` (structlog, key=value or JSON), Celery logs each task's run time, the bridge logs each dispatch
as a JSON line. A :class:`LogCursor` remembers where it stopped, so each load level reads only its own lines.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from devtools.stack import proc, testing

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

STAGE = re.compile(r"\b(fetch|decode|recognize)_ms[\"']?\s*[=:]\s*([\d.]+)")
PHOTO_ID = re.compile(r"\bphoto_id[\"']?\s*[=:]\s*[\"']?([0-9a-f-]{36})")
TASK_DONE = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded in ([\d.]+)s")


def summary(values: Iterable[float]) -> dict[str, float | int | None]:
    """n, median, p95, p99, mean and max (None when there are no values)."""
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return {"n": 0, "median": None, "p95": None, "p99": None, "mean": None, "max": None}
    p50, p95, p99 = np.percentile(data, [50, 95, 99])
    return {
        "n": int(data.size),
        "median": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(data.mean()),
        "max": float(data.max()),
    }


class LogCursor:
    """Reads what was appended to a log since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def new_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        # Keep a partial last line for the next call.
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].decode(errors="replace").splitlines()


@dataclass
class WorkerLog:
    """What one level's worker log lines say: stage times per photo, run times per task name."""

    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # photo id -> stage -> ms
    task_seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def read(self, lines: Iterable[str]) -> None:
        for line in lines:
            done = TASK_DONE.search(line)
            if done:
                self.task_seconds[done[1]].append(float(done[2]))
                continue
            if "photo_recognized" not in line:
                continue
            photo = PHOTO_ID.search(line)
            if photo:
                self.stages[photo[1]] = {name: float(ms) for name, ms in STAGE.findall(line)}


def dispatch_times(lines: Iterable[str]) -> dict[str, float]:
    """Object key -> when the bridge handed its created event to the broker (epoch seconds)."""
    times: dict[str, float] = {}
    for line in lines:
        if '"event.dispatched"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event_name", "").startswith("s3:ObjectCreated") and "timestamp" in entry:
            stamp = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
            times.setdefault(entry["key"], stamp.timestamp())
    return times


def group_cpu_seconds(pgid: int, *, exclude: int | None = None) -> float:
    """User + system CPU seconds of the live processes in a process group (optionally without its leader)."""
    total = 0
    for member in proc.group_members(pgid):
        if member.pid == exclude:
            continue
        try:
            fields = (proc.PROC / str(member.pid) / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    return total / CLOCK_TICKS


def server_of(url: str) -> str:
    """``redis://host:port/3`` -> ``redis://host:port``: the server, without the database a URL picks."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def bench_resources(work: Path) -> Any:
    """A private database and Redis database for a bench's stack (``with bench_resources(work) as settings``), on
    the servers LANDMARKS_DATABASE_URL and LANDMARKS_BROKER_URL name, the local ones by default."""
    database_server = os.environ.get("LANDMARKS_DATABASE_URL") or "postgresql+psycopg2://postgres@127.0.0.1:5432/x"
    redis_server = server_of(os.environ.get("LANDMARKS_BROKER_URL") or "redis://127.0.0.1:6379/0")
    return testing.isolated_resources(
        database_server, work / "state", redis_server=redis_server, db_prefix="landmarks_bench"
    )
