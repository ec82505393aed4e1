"""Photos/s of ONE recognize worker process draining a burst of N queued photos: batch 1 vs micro-batches.

Starts an isolated stack (devtools/stack/testing.py) with one recognize pool process, builds a small demo model
from Debian's gcompris-qt-data, then for each micro-batch size M (``LANDMARKS_RECOGNITION__MICRO_BATCH``; 1 = off):
restarts the recognize worker with it, warms it up (model loaded), stops it consuming (Celery's
``cancel_consumer``), uploads N photos and waits until ingest has queued all of them, then lets it consume again
and times the drain until the last photo's album write (``photos.processed_at``). The worker's own log gives the
recognizer calls: how many photos each held and how long it took.

The device is the worker's (``recognition.device``, auto: CUDA when present), so the same command measures a GPU
machine unchanged (it needs PostgreSQL, Redis and SeaweedFS there too; ``bench_recognize.py`` measures the
worker's own part without them). Demo photos come in several sizes; a GPU call letterboxes them into one forward
pass, a CPU runs one pass per photo. ``--uniform`` first crops them all to 1600 x 1200 (a phone's 4:3).

``--quick``: 3-landmark model, N = 16. Run from the repository root:
``.venv/bin/python bench/bench_throughput.py [--quick] [--photos N] [--micro-batch 1 16] [--uniform]
[--engine torch onnxruntime]`` (each engine restarts the worker with ``recognition.engine`` set: same run, same
photos, so the printed ratio compares them).
Writes ``bench/results/throughput.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import LogCursor, bench_resources, summary
from PIL import Image, ImageOps
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from devtools.stack import testing
from shared.db.models import Photo, PhotoStatus
from shared.model.accelerator import is_cuda_device

RESULTS = Path(__file__).resolve().parent / "results" / "throughput.json"
FULL_LANDMARKS = ("taj_mahal", "eiffel_tower", "colosseum", "brandenburg_gate", "great_pyramid_of_giza")
QUICK_LANDMARKS = ("taj_mahal", "colosseum", "brandenburg_gate")
WORKER = "worker-recognize"
FINAL = (PhotoStatus.done, PhotoStatus.failed, PhotoStatus.deleted)
DEADLINE_S = 600.0


def uniform(data: bytes, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """The photo centre-cropped and scaled to one size, re-encoded as JPEG."""
    with Image.open(io.BytesIO(data)) as im:
        fitted = ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), size)
    out = io.BytesIO()
    fitted.save(out, "JPEG", quality=90)
    return out.getvalue()


class Burst:
    """One micro-batch setting: restart the worker with it, warm it up, then time the drain of a burst."""

    def __init__(self, stack: testing.IsolatedStack, factory: Any, client: Any, photos: list[bytes]) -> None:
        self.stack, self.factory, self.client, self.photos = stack, factory, client, photos
        self.bucket = stack.settings.s3.photos_bucket
        self.celery = stack.celery()

    def restart(self, micro_batch: int, wait_ms: float, engine: str = "auto") -> None:
        app = self.stack.apps[WORKER]
        env = {
            **app.env,
            "LANDMARKS_RECOGNITION__MICRO_BATCH": str(micro_batch),
            "LANDMARKS_RECOGNITION__MICRO_BATCH_WAIT_MS": str(wait_ms),
            "LANDMARKS_RECOGNITION__ENGINE": engine,
        }
        self.stack.apps[WORKER] = dataclasses.replace(app, env=env)
        self.stack.stop(WORKER)
        self.stack.start(WORKER)

    def final_count(self, prefix: str) -> int:
        with self.factory() as session:
            return session.scalar(
                select(func.count()).where(
                    Photo.bucket == self.bucket, Photo.key.like(f"{prefix}%"), Photo.status.in_(FINAL)
                )
            )

    def row_count(self, prefix: str) -> int:
        with self.factory() as session:
            return session.scalar(select(func.count()).where(Photo.bucket == self.bucket, Photo.key.like(f"{prefix}%")))

    def upload(self, count: int) -> str:
        owner = f"bench{uuid.uuid4().hex[:6]}"
        prefix = f"users/{owner}/"

        def put(index: int) -> None:
            data = self.photos[index % len(self.photos)]
            key = f"{prefix}{index:05d}.jpg"
            self.client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg", metadata={"user": owner}
            )

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(put, range(count)))
        return prefix

    def wait(self, count_of: Any, prefix: str, count: int, what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while count_of(prefix) < count:
            if time.monotonic() > deadline:
                raise testing.StackError(f"gave up waiting for {what}: {count_of(prefix)}/{count}")
            time.sleep(0.05)

    def run(self, photos: int) -> dict[str, Any]:
        node = self.stack.apps[WORKER].address
        warm = self.upload(1)  # loads torch and the model before timing starts
        self.wait(self.final_count, warm, 1, "the warm-up photo")
        self.celery.control.cancel_consumer("recognize", destination=[node], reply=True, timeout=10)
        log = LogCursor(self.stack.log_path(WORKER))
        prefix = self.upload(photos)
        self.wait(self.row_count, prefix, photos, "ingest of the burst")
        time.sleep(1.0)  # the last ingest tasks publish their recognize messages after their commit
        started = time.time()
        self.celery.control.add_consumer("recognize", destination=[node], reply=True, timeout=10)
        self.wait(self.final_count, prefix, photos, "the burst to drain")
        with self.factory() as session:
            rows = session.execute(
                select(Photo.status, Photo.processed_at).where(
                    Photo.bucket == self.bucket, Photo.key.like(f"{prefix}%")
                )
            ).all()
        done = [at.timestamp() for status, at in rows if status == PhotoStatus.done and at is not None]
        seconds = max(done) - started if done else None
        calls = recognizer_calls(log.new_lines())
        busy_s = sum(ms for _, ms in calls.values()) / 1e3
        sizes = [n for n, _ in calls.values()]
        return {
            "photos": photos,
            "done": len(done),
            "drain_s": seconds,
            "photos_per_s": len(done) / seconds if seconds else None,
            "recognizer_calls": len(calls),
            "photos_per_call": summary(sizes),
            "recognizer_busy_s": busy_s,
            "photos_per_recognizer_s": sum(sizes) / busy_s if busy_s else None,
        }


def recognizer_calls(lines: list[str]) -> dict[str, tuple[int, float]]:
    """Recognizer call (the task run that made it) -> (photos in it, its milliseconds), from `photo_recognized`."""
    calls: dict[str, tuple[int, float]] = {}
    for line in lines:
        if '"photo_recognized"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        size = int(entry.get("batch_size") or 1)
        ms = float(entry.get("recognize_batch_ms") or entry.get("recognize_ms") or 0.0)
        calls[str(entry.get("task_id"))] = (size, ms)
    return calls


def print_table(console: Console, device: str, results: list[dict[str, Any]]) -> None:
    table = Table(title=f"one recognize worker process ({device}) draining a burst")
    cols = ("engine", "micro-batch", "photos", "done", "drain s", "photos/s", "calls", "photos/call")
    for col in (*cols, "photos/recognizer-s"):
        table.add_column(col, justify="right")
    for r in results:
        per_call = r["photos_per_call"]["mean"]
        table.add_row(
            r.get("engine", "auto"), str(r["micro_batch"]), str(r["photos"]), str(r["done"]),
            f"{r['drain_s']:.2f}" if r["drain_s"] else "-",
            f"{r['photos_per_s']:.2f}" if r["photos_per_s"] else "-",
            str(r["recognizer_calls"]), f"{per_call:.1f}" if per_call else "-",
            f"{r['photos_per_recognizer_s']:.2f}" if r["photos_per_recognizer_s"] else "-",
        )  # fmt: skip
    console.print(table)
    rates = {(r.get("engine"), r["micro_batch"]): r["photos_per_s"] for r in results if r["photos_per_s"]}
    for (engine, size), rate in rates.items():
        torch_rate = rates.get(("torch", size))
        if engine == "onnxruntime" and torch_rate:
            console.print(f"micro-batch {size}: onnxruntime / torch = {rate / torch_rate:.2f}x photos/s (same run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3-landmark model, a burst of 16")
    parser.add_argument("--photos", type=int, default=None, help="photos in the burst (default 64, quick 16)")
    parser.add_argument("--micro-batch", type=int, nargs="+", default=None, help="sizes to compare (default 1 N)")
    parser.add_argument("--wait-ms", type=float, default=50.0, help="LANDMARKS_RECOGNITION__MICRO_BATCH_WAIT_MS")
    parser.add_argument("--uniform", action="store_true", help="crop every photo to 1600 x 1200 first")
    parser.add_argument(
        "--engine", nargs="+", default=["auto"], help="recognition.engine per run: auto | torch | onnxruntime"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    photos_n = args.photos or (16 if args.quick else 64)
    sizes = args.micro_batch or [1, photos_n]
    landmarks = QUICK_LANDMARKS if args.quick else FULL_LANDMARKS
    console = Console(width=160)

    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    results: list[dict[str, Any]] = []
    concurrency = {"ingest": 2, "recognize": 1, "albums": 1}
    try:
        with (
            bench_resources(work) as settings,
            testing.started_demo_stack(
                settings, work / "demo", landmarks=landmarks, negatives=10, concurrency=concurrency
            ) as up,
        ):
            device = "cuda" if is_cuda_device(settings.recognition.device) else "cpu"
            model = up.model
            photos = [u.path.read_bytes() for u in model.data.uploads]
            if args.uniform:
                photos = [uniform(p) for p in photos]
            burst = Burst(up.stack, up.factory, up.minio, photos)
            for engine in args.engine:
                for size in sizes:
                    burst.restart(size, args.wait_ms, engine)
                    result = {"engine": engine, "micro_batch": size, **burst.run(photos_n)}
                    results.append(result)
                    console.print(f"{engine}, micro-batch {size}: {result['photos_per_s'] or 0:.2f} photos/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "bench": "throughput",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m_at_end": os.getloadavg()[0]},
        "device": device,
        "uniform_photos": args.uniform,
        "wait_ms": args.wait_ms,
        "worker_threads": settings.recognition.worker_threads,
        "model": {"version": model.version, "landmarks": len(model.landmarks)},
        "results": results,
    }
    print_table(console, device, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
