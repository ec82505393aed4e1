"""Upload-to-album latency and sustained throughput of the real pipeline at offered loads of 1, 5 and 20 uploads/s.

Starts an isolated stack (devtools/stack/testing.py: own database, Redis database, `weed mini` on free ports,
Celery workers for ingest/recognize/albums and the SeaweedFS bridge as subprocesses), builds a small demo model
from Debian's gcompris-qt-data, then uploads the demo's upload photos with the minio client on an open-loop
schedule. Latency = ``photos.processed_at`` (set in the transaction that writes the album rows) minus the moment
the upload started. A level stops offering early when the backlog clearly grows (the stack cannot keep up).

Where the time goes per photo comes from the process logs: bridge dispatch (upload + filer event), the
recognize task's ``fetch_ms``/``decode_ms``/``recognize_ms``, and Celery's run time of each task (ingest,
recognize, albums apply = the database write); the rest is queueing. CPU seconds of the recognize pool process
give photos per CPU-second. Writes ``bench/results/pipeline.json`` and prints a table.

``--quick`` (< 1 min on 2 cores): a 3-landmark model, levels 1 and 5 for a few seconds each. Full: 8 landmarks,
levels 1, 5, 20 for up to 40 s each (< 10 min). Run from the repository root:
``.venv/bin/python bench/bench_pipeline.py [--quick]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import LogCursor, WorkerLog, bench_resources, dispatch_times, group_cpu_seconds, summary
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from devtools.stack import testing
from shared.db.models import Photo, PhotoStatus

RESULTS = Path(__file__).resolve().parent / "results" / "pipeline.json"
FULL_LANDMARKS = (
    "taj_mahal", "eiffel_tower", "colosseum", "brandenburg_gate", "great_pyramid_of_giza", "mount_rushmore",
    "statue_of_liberty", "christ_the_redeemer",
)  # fmt: skip
QUICK_LANDMARKS = ("taj_mahal", "colosseum", "brandenburg_gate")
FINAL = (PhotoStatus.done, PhotoStatus.failed, PhotoStatus.deleted)
TARGET = {"rate": 5, "median_s": 0.5, "p95_s": 1.5}


@dataclass(frozen=True)
class Plan:
    landmarks: tuple[str, ...]
    negatives: int
    rates: tuple[float, ...]
    seconds: float  # offered load per level
    drain_s: float  # longest wait for the backlog after a level


QUICK = Plan(QUICK_LANDMARKS, 10, (1, 5), 5.0, 20.0)
FULL = Plan(FULL_LANDMARKS, 30, (1, 5, 20), 40.0, 120.0)


class Level:
    """One offered load: upload on schedule, watch the backlog, drain, then collect times from DB and logs."""

    def __init__(self, stack: testing.IsolatedStack, factory: Any, client: Any, photos: list[bytes]) -> None:
        self.stack, self.factory, self.client, self.photos = stack, factory, client, photos
        self.bucket = stack.settings.s3.photos_bucket

    def done_count(self, prefix: str) -> int:
        with self.factory() as session:
            return session.scalar(
                select(func.count()).where(
                    Photo.bucket == self.bucket, Photo.key.like(f"{prefix}%"), Photo.status.in_(FINAL)
                )
            )

    def run(self, rate: float, seconds: float, drain_s: float) -> dict[str, Any]:
        owner = f"bench{uuid.uuid4().hex[:6]}"
        prefix = f"users/{owner}/"
        logs = {name: LogCursor(self.stack.log_path(name)) for name in self.stack.apps}
        recognize = self.stack.registry.read("worker-recognize")
        assert recognize is not None
        cpu_before = group_cpu_seconds(recognize.pgid, exclude=recognize.pid)
        started: dict[str, float] = {}

        def put(index: int) -> None:
            key = f"{prefix}{index:05d}.jpg"
            data = self.photos[index % len(self.photos)]
            started[key] = time.time()
            self.client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg", metadata={"user": owner}
            )

        saturated = False
        t0 = time.monotonic()
        total = int(rate * seconds)
        backlog_limit = max(10, int(3 * rate))
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = []
            for i in range(total):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(put, i))
                elapsed = time.monotonic() - t0
                if i % max(1, int(rate)) == 0 and elapsed > 3 and i - self.done_count(prefix) > backlog_limit:
                    saturated = True  # the queue clearly grows: stop offering this load
                    break
            for future in futures:
                future.result()
        offered_s = time.monotonic() - t0
        uploaded = len(started)
        deadline = time.monotonic() + drain_s
        while self.done_count(prefix) < uploaded and time.monotonic() < deadline:
            time.sleep(0.25)
        cpu_s = group_cpu_seconds(recognize.pgid, exclude=recognize.pid) - cpu_before

        with self.factory() as session:
            rows = session.execute(
                select(Photo.id, Photo.key, Photo.status, Photo.processed_at).where(
                    Photo.bucket == self.bucket, Photo.key.like(f"{prefix}%")
                )
            ).all()
        done = [(str(pid), key, at.timestamp()) for pid, key, status, at in rows if status == PhotoStatus.done]
        latencies = [at - started[key] for _, key, at in done]
        worker = WorkerLog()
        dispatched: dict[str, float] = {}
        for name, cursor in logs.items():
            lines = cursor.new_lines()
            if name.startswith("bridge"):
                dispatched.update(dispatch_times(lines))
            else:
                worker.read(lines)
        span = (max(at for *_, at in done) - min(started.values())) if done else 0.0
        stages = {
            stage: summary(worker.stages[pid][stage] / 1e3 for pid, _, _ in done if stage in worker.stages.get(pid, {}))
            for stage in ("fetch", "decode", "recognize")
        }
        return {
            "offered_per_s": rate,
            "offered_s": offered_s,
            "uploaded": uploaded,
            "processed": len(done),
            "failed": sum(1 for r in rows if r.status == PhotoStatus.failed),
            "unprocessed_after_drain": uploaded - sum(1 for r in rows if r.status in FINAL),
            "stopped_early": saturated,
            "latency_s": summary(latencies),
            "throughput_per_s": len(done) / span if span > 0 else None,
            "stages_s": {
                "upload_to_dispatch": summary(dispatched[k] - started[k] for _, k, _ in done if k in dispatched),
                **stages,
                "task_ingest": summary(worker.task_seconds.get("ingest.object_event", [])),
                "task_recognize": summary(worker.task_seconds.get("recognition.recognize_photo", [])),
                "task_albums_apply": summary(worker.task_seconds.get("albums.apply_recognition", [])),
            },
            "recognize_cpu_s": cpu_s,
            "photos_per_recognize_cpu_s": len(done) / cpu_s if cpu_s > 0 else None,
        }


def warm_up(level: Level) -> None:
    """One photo end to end, so the recognize worker has loaded torch and the model before timing starts."""
    result = level.run(rate=1, seconds=1, drain_s=180)
    if result["processed"] != 1:
        raise testing.StackError(f"warm-up photo not processed: {result}")


def fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def print_table(console: Console, levels: list[dict[str, Any]]) -> None:
    table = Table(title="upload -> album (seconds unless noted)")
    for col in ("offered/s", "uploaded", "done", "median", "p95", "p99", "photos/s", "early stop",
                "fetch ms", "decode ms", "recognize ms", "albums ms", "photos/CPU-s"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in levels:
        lat, st = r["latency_s"], r["stages_s"]
        table.add_row(
            f"{r['offered_per_s']:g}", str(r["uploaded"]), str(r["processed"]),
            fmt(lat["median"]), fmt(lat["p95"]), fmt(lat["p99"]), fmt(r["throughput_per_s"]),
            "yes" if r["stopped_early"] else "no",
            fmt(st["fetch"]["median"], 1e3, 1), fmt(st["decode"]["median"], 1e3, 1),
            fmt(st["recognize"]["median"], 1e3, 0), fmt(st["task_albums_apply"]["median"], 1e3, 1),
            fmt(r["photos_per_recognize_cpu_s"]),
        )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3-landmark model, levels 1 and 5, a few s each")
    parser.add_argument("--rates", nargs="*", type=float, default=None, help="offered uploads/s per level")
    parser.add_argument("--seconds", type=float, default=None, help="offered load per level (s)")
    parser.add_argument("--recognize-workers", type=int, default=1, help="recognize pool processes")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="OMP_NUM_THREADS of the recognize worker (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    rates = tuple(args.rates) if args.rates else plan.rates
    seconds = args.seconds or plan.seconds
    console = Console(width=200)

    t_setup = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    concurrency = {"ingest": 2, "recognize": args.recognize_workers, "albums": 1}
    threads = args.torch_threads
    worker_env = {"recognize": {"OMP_NUM_THREADS": str(threads)}} if threads else None
    try:
        with (
            bench_resources(work) as settings,
            testing.started_demo_stack(
                settings,
                work / "demo",
                landmarks=plan.landmarks,
                negatives=plan.negatives,
                concurrency=concurrency,
                worker_env=worker_env,
                threads=threads,
            ) as up,
        ):
            model = up.model
            photos = [u.path.read_bytes() for u in model.data.uploads]
            level = Level(up.stack, up.factory, up.minio, photos)
            warm_up(level)
            setup_s = time.monotonic() - t_setup
            console.print(f"stack and model {model.version} ready in {setup_s:.0f} s; {len(photos)} photos to upload")
            results = []
            for rate in rates:
                result = level.run(rate, seconds, plan.drain_s)
                results.append(result)
                console.print(
                    f"{rate:g}/s: {result['processed']}/{result['uploaded']} done, "
                    f"median {fmt(result['latency_s']['median'])} s, p95 {fmt(result['latency_s']['p95'])} s"
                    + (" (stopped early: backlog grew)" if result["stopped_early"] else "")
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    at_target = next((r for r in results if r["offered_per_s"] == TARGET["rate"]), None)
    meets = None
    if at_target and at_target["latency_s"]["median"] is not None:
        latency = at_target["latency_s"]
        meets = latency["median"] < TARGET["median_s"] and latency["p95"] < TARGET["p95_s"]
    report = {
        "bench": "pipeline",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m_at_end": os.getloadavg()[0]},
        "quick": args.quick,
        "model": {"version": model.version, "landmarks": len(model.landmarks), "negatives": model.negatives},
        "workers": concurrency,
        "torch_threads": args.torch_threads or "default",
        "setup_s": setup_s,
        "levels": results,
        "target": {**TARGET, "met": meets},
    }
    print_table(console, results)
    console.print(f"target (median < {TARGET['median_s']} s, p95 < {TARGET['p95_s']} s at {TARGET['rate']}/s): {meets}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
