"""One recognize worker process's own work on a burst of photos, in process: decode on T threads, then one
recognizer call (letterboxed forward pass + decision) per micro-batch of M photos, exactly as
``tasks/recognition.py`` runs a micro-batch (``shared.photos.recognize.recognize_fetched``).

No broker, object store or database: the photos' bytes are already in memory (what the fetch hands on), so this
is the ceiling of one worker process and says whether decoding or the network limits it; ``bench_throughput.py``
measures the whole path through Celery, Redis, S3 and PostgreSQL.

Photos: the demo's (``landmarks demo prepare --out DIR``; its ``eval.csv`` lists them): train rows build the
model (gallery and calibration, embedded in process), test rows (the users' uploads) make the burst, re-encoded
as phone-sized JPEGs of ``--megapixels`` (default 12; 0 keeps them as they are) and repeated to ``--count``.

Reports per (decode fit, M, T): photos/s over the burst, milliseconds per photo end to end (decode + embed +
search + decide: the wall over the photos), decode and recognizer milliseconds per photo (decode summed over
threads), and GPU memory (PyTorch's peak and the process's total by nvidia-smi); ``--profile`` also times each
stage of one recognizer call of the largest micro-batch (resize, letterbox, transfer, network, decision). Writes
``bench/results/recognize.json``. Run from the repository root, e.g.
``python bench/bench_recognize.py --demo DIR --micro-batch 1 16 64 --threads 1 8 16``.

One CPU core, as a recognize process with concurrency 1 runs, old and new decode in the same run:
``taskset -c 0 python bench/bench_recognize.py --demo DIR --micro-batch 1 --threads 1 --net-threads 1
--fit short long --engine torch onnxruntime`` (``--fit short``: the shorter side decoded to the network's size, as
before the decode followed the network's long side). ``--noise SIGMA`` adds sensor-like noise before the JPEG is
written, so its size in MB is a phone's (a smooth upscale compresses to a third of one, and the entropy decoding
that no DCT scaling skips grows with the bytes).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gpu import device_info, memory_mib, reset_peak
from PIL import Image
from rich.console import Console
from rich.table import Table

from shared.imaging import decode_photo, fit_for_resize
from shared.imaging.decode import FITS
from shared.model import Embedder, EmbedderConfig, resolve_device
from shared.model.preprocess import letterbox, resize
from shared.photos.recognize import FetchedPhoto, PhotoRef, recognize_fetched
from shared.recognition.build import build_bundle_from_embeddings
from shared.recognition.bundle import Bundle, LandmarkInfo
from shared.recognition.outcome import RecognitionOutcome
from shared.recognition.recognizer import Recognizer

RESULTS = Path(__file__).resolve().parent / "results" / "recognize.json"
MAX_PIXELS = 200_000_000


def phone_jpeg(data: bytes, megapixels: float, noise: float = 0.0) -> bytes:
    """The photo scaled to ``megapixels`` (aspect kept), with Gaussian noise of ``noise`` grey levels, and saved
    as a quality-90 JPEG, as a phone would."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    scale = (megapixels * 1e6 / (rgb.width * rgb.height)) ** 0.5
    big = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BICUBIC)
    if noise > 0:
        rng = np.random.default_rng(len(data))
        pixels = np.asarray(big, dtype=np.float32) + rng.normal(0.0, noise, (big.height, big.width, 3))
        big = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    big.save(out, "JPEG", quality=90)
    return out.getvalue()


def read_demo(folder: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The demo's train rows (gallery and calibration) and test rows (uploads)."""
    with (folder / "eval.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (folder / r["path"]).is_file()]
    return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] != "train"]


def build_bundle(embedder: Embedder, folder: Path, train: list[dict[str, str]]) -> Bundle:
    """Centroids, references and thresholds from the demo's train rows, embedded by ``embedder``."""
    config = EmbedderConfig()
    fit = fit_for_resize(config.resize, config.decode_fit)  # the gallery as model build decodes it
    images = [decode_photo((folder / r["path"]).read_bytes(), min_side=config.image_size, fit=fit).image for r in train]
    embeddings = embedder.embed(images)
    slugs = sorted({r["landmark_id"] for r in train if r["kind"] == "landmark"})
    ids = {slug: i + 1 for i, slug in enumerate(slugs)}
    by_slug = {r["landmark_id"]: r for r in train if r["kind"] == "landmark"}
    landmarks = [
        LandmarkInfo(
            ids[s],
            s,
            by_slug[s]["landmark_name"],
            by_slug[s]["city"],
            by_slug[s]["country"],
            float(by_slug[s]["lat"] or "nan"),
            float(by_slug[s]["lon"] or "nan"),
        )
        for s in slugs
    ]
    is_landmark = np.array([r["kind"] == "landmark" for r in train])
    return build_bundle_from_embeddings(
        version="bench",
        model=embedder.describe(),
        landmarks=landmarks,
        gallery=embeddings[is_landmark],
        gallery_landmarks=np.array([ids[r["landmark_id"]] for r in train if r["kind"] == "landmark"]),
        non_landmarks=embeddings[~is_landmark],
    )


def drain(recognizer: Recognizer, burst: list[bytes], micro_batch: int, threads: int) -> dict[str, Any]:
    """Recognise the burst micro-batch by micro-batch; wall time and where it went."""
    refs = [PhotoRef(uuid.uuid4(), "bench", f"{i:05d}.jpg", None) for i in range(len(burst))]
    fetched = [FetchedPhoto(data, 0.0) for data in burst]
    outcomes: list[Any] = []
    t0 = time.perf_counter()
    for start in range(0, len(burst), micro_batch):
        end = start + micro_batch
        outcomes += recognize_fetched(
            recognizer, refs[start:end], fetched[start:end], max_pixels=MAX_PIXELS, threads=threads
        )
    wall = time.perf_counter() - t0
    done = [o for o in outcomes if isinstance(o, RecognitionOutcome)]
    failed = [repr(o) for o in outcomes if not isinstance(o, RecognitionOutcome)]
    decode_ms = sum(o.timings_ms["decode"] for o in done)
    calls = len(range(0, len(burst), micro_batch))
    recognizer_ms = sum(o.timings_ms["recognize"] for o in done)
    return {
        "photos": len(burst),
        "done": len(done),
        "failed": failed[:3],
        "wall_s": round(wall, 3),
        "photos_per_s": len(done) / wall,
        "ms_per_photo": 1e3 * wall / max(1, len(done)),
        "decode_ms_per_photo": decode_ms / max(1, len(done)),
        "decode_wall_s": round(decode_ms / 1e3 / threads, 3),
        "recognizer_calls": calls,
        "recognizer_ms_per_call": recognizer_ms / calls,
        "recognizer_s": round(recognizer_ms / 1e3, 3),
        "accepted": sum(1 for o in done if o.matches and o.matches[0].landmark),
    }


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One row's slices of the burst (:func:`drain` results) as one result."""
    done = sum(p["done"] for p in parts)
    wall = sum(p["wall_s"] for p in parts)
    calls = sum(p["recognizer_calls"] for p in parts)
    recognizer_s = sum(p["recognizer_s"] for p in parts)
    decode_ms = sum(p["decode_ms_per_photo"] * p["done"] for p in parts)
    return {
        "photos": sum(p["photos"] for p in parts),
        "done": done,
        "failed": [f for p in parts for f in p["failed"]][:3],
        "wall_s": round(wall, 3),
        "photos_per_s": done / wall,
        "ms_per_photo": 1e3 * wall / max(1, done),
        "decode_ms_per_photo": decode_ms / max(1, done),
        "decode_wall_s": round(sum(p["decode_wall_s"] for p in parts), 3),
        "recognizer_calls": calls,
        "recognizer_ms_per_call": 1e3 * recognizer_s / max(1, calls),
        "recognizer_s": round(recognizer_s, 3),
        "accepted": sum(p["accepted"] for p in parts),
        "load_1m": [p["load_1m"] for p in parts],
        **{
            k: max(p.get(k) or 0 for p in parts)
            for k in ("peak_allocated_mib", "peak_reserved_mib", "process_mib")
            if k in parts[0]
        },
    }


def profile_call(recognizer: Recognizer, burst: list[bytes], size: int, threads: int) -> dict[str, float]:
    """Median milliseconds of each stage of one recognizer call on ``size`` decoded photos (device synced)."""
    embedder = recognizer.embedder
    assert isinstance(embedder, Embedder) and embedder.net is not None and embedder.device is not None
    net, device = embedder.net, embedder.device
    with ThreadPoolExecutor(threads) as pool:
        photos = list(
            pool.map(lambda d: decode_photo(d, min_side=recognizer.min_side, fit=recognizer.fit), burst[:size])
        )
    images = [p.image for p in photos]
    cfg = embedder.config
    resized = embedder._map(lambda im: resize(im, cfg.image_size, cfg.resize), images)

    def network() -> None:
        x, regions = embedder._batch(resized)
        with torch.inference_mode():
            net.descriptor_and_pooled(x, regions)

    embeddings, _ = recognizer.embed_with_logits(photos)
    stages = {
        "resize": lambda: embedder._map(lambda im: resize(im, cfg.image_size, cfg.resize), images),
        "letterbox": lambda: letterbox(resized, padding=embedder.spec.padding, stride=embedder.spec.stride),
        "to_device": lambda: embedder._batch(resized),
        "letterbox_to_device_network": network,
        "embed_with_logits": lambda: recognizer.embed_with_logits(photos),
        "decide": lambda: recognizer.decide(embeddings, [None] * len(photos)),
        "recognize_with_scenes": lambda: recognizer.recognize_with_scenes(photos),
    }
    out = {}
    for name, stage in stages.items():
        times = []
        for _ in range(5):
            sync(device)
            t0 = time.perf_counter()
            stage()
            sync(device)
            times.append(1e3 * (time.perf_counter() - t0))
        out[name] = round(float(np.median(times)), 2)
    return {"photos": size, "threads": threads, **out}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, required=True, help="folder written by `landmarks demo prepare`")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--micro-batch", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--count", type=int, default=256, help="photos in the burst")
    parser.add_argument("--megapixels", type=float, default=12.0, help="re-encode uploads at this size (0: as is)")
    parser.add_argument("--noise", type=float, default=0.0, help="sensor-like noise (grey levels) in those JPEGs")
    parser.add_argument("--fit", nargs="+", choices=FITS, default=["long"], help="decode side(s) to compare")
    parser.add_argument("--engine", nargs="+", default=["auto"], help="auto | torch | onnxruntime (same run)")
    parser.add_argument("--net-threads", type=int, default=None, help="the network's threads (default: engine's)")
    parser.add_argument("--rounds", type=int, default=8, help="slices of the burst the rows take turns on")
    parser.add_argument("--profile", action="store_true", help="also time the stages of one recognizer call")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console(width=160)
    device = resolve_device(args.device)
    cpus = os.cpu_count() or 1

    train, test = read_demo(args.demo)
    uploads = [(args.demo / r["path"]).read_bytes() for r in test]
    with ThreadPoolExecutor(cpus) as pool:
        if args.megapixels > 0:
            uploads = list(pool.map(lambda d: phone_jpeg(d, args.megapixels, args.noise), uploads))
    burst = [uploads[i % len(uploads)] for i in range(args.count)]
    mb = sum(map(len, burst)) / len(burst) / 1e6
    console.log(f"{len(train)} train photos, burst of {len(burst)} ({len(uploads)} distinct, {mb:.1f} MB each)")

    batch = max(args.micro_batch)
    builder = Embedder(device=str(device), precision=args.precision, batch_size=batch, classifier=True)
    t0 = time.perf_counter()
    bundle = build_bundle(builder, args.demo, train)
    build_s = time.perf_counter() - t0
    del builder
    results: list[dict[str, Any]] = []
    profiles: list[dict[str, float]] = []
    recognizers: dict[tuple[str, int], Recognizer] = {}
    for engine, threads in [(e, t) for e in args.engine for t in args.threads]:
        embedder = Embedder(
            device=str(device),
            precision=args.precision,
            batch_size=batch,
            classifier=True,
            preprocess_threads=threads,
            engine=engine,
            threads=args.net_threads,
        )
        recognizers[engine, threads] = Recognizer(bundle, embedder)
    rows = [
        (engine, threads, micro_batch, fit)
        for engine, threads in recognizers
        for micro_batch in args.micro_batch
        for fit in args.fit
    ]
    rows = [r for r in rows if not (r[2] == 1 and r[1] > 1)]  # a call of one photo decodes on one thread
    for engine, threads, micro_batch, fit in rows:  # warm-up: model, cuDNN
        recognizer = recognizers[engine, threads]
        recognizer.fit = fit
        drain(recognizer, burst[: max(2 * micro_batch, 16)], micro_batch, threads)
    # Rows take turns, a slice of the burst at a time: on a shared machine the load drifts, and every row then
    # sees the same drift (the comparison between rows is what to read).
    parts: dict[tuple[str, int, int, str], list[dict[str, Any]]] = {row: [] for row in rows}
    size = -(-len(burst) // args.rounds)
    for start in range(0, len(burst), size):
        for row in rows:
            engine, threads, micro_batch, fit = row
            recognizer = recognizers[engine, threads]
            recognizer.fit = fit
            reset_peak(device)
            parts[row].append(
                {**drain(recognizer, burst[start : start + size], micro_batch, threads), **memory_mib(device)}
            )
            parts[row][-1]["load_1m"] = os.getloadavg()[0]
    for row, measured in parts.items():
        engine, threads, micro_batch, fit = row
        results.append(
            {"engine": engine, "fit": fit, "micro_batch": micro_batch, "threads": threads, **merged(measured)}
        )
        console.log(results[-1])
    if args.profile:
        for (_, threads), recognizer in recognizers.items():
            profiles.append(profile_call(recognizer, burst, max(args.micro_batch), threads))
            console.log(profiles[-1])
    report = {
        "bench": "recognize",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": device_info(device),
        "precision": args.precision,
        "megapixels": args.megapixels,
        "noise": args.noise,
        "net_threads": args.net_threads,
        "burst": {"photos": len(burst), "distinct": len(uploads), "mb_per_photo": round(mb, 2)},
        "model": {"landmarks": len(bundle.landmarks), "centroids": len(bundle.centroids), "build_s": round(build_s, 1)},
        "load_average": os.getloadavg(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "results": results,
        "profiles": profiles,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    table = Table(
        title=f"one recognize worker's own work ({report['machine'].get('gpu') or device}), {mb:.1f} MB JPEGs"
    )
    for col in (
        "engine",
        "decode fit",
        "micro-batch",
        "threads",
        "photos/s",
        "ms/photo",
        "decode ms/photo",
        "decode s",
        "recognizer ms/call",
        "recognizer s",
        "process MiB",
    ):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["engine"], r["fit"], str(r["micro_batch"]), str(r["threads"]), f"{r['photos_per_s']:.1f}",
            f"{r['ms_per_photo']:.1f}", f"{r['decode_ms_per_photo']:.1f}",
            f"{r['decode_wall_s']:.2f}", f"{r['recognizer_ms_per_call']:.1f}", f"{r['recognizer_s']:.2f}",
            str(r.get("process_mib", "-")),
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
