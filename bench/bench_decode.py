"""How long one upload takes to decode: Pillow's full decode against decode_photo's reduced decode.

A synthetic 12 MP phone-sized photo (gradients plus noise, so it compresses like a photo rather than flat colour)
is encoded as JPEG, PNG, WebP and HEIC (when pillow-heif can encode), then decoded repeatedly in this process:

- ``full``: ``Image.open`` + ``load`` + ``convert("RGB")``: every pixel, at full size;
- ``full+resize``: the same plus a resize to the CNN's size: what code without ``draft`` would do;
- ``decode_photo``: the project's path (JPEG DCT scaling / HEIF thumbnail, then resize).

Writes ``bench/results/decode.json`` and prints a table. ``--quick`` runs fewer repeats on a 3 MP photo.
Run from the repository root: ``.venv/bin/python bench/bench_decode.py [--quick]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL
from PIL import Image
from rich.console import Console
from rich.table import Table

from shared.imaging import DEFAULT_MIN_SIDE, decode_photo

RESULTS = Path(__file__).resolve().parent / "results" / "decode.json"
# name -> (Pillow format, save options)
ENCODINGS: dict[str, tuple[str, dict[str, object]]] = {
    "JPEG": ("JPEG", {"quality": 90}),  # libjpeg default 4:2:0, like phone cameras
    "PNG": ("PNG", {"compress_level": 1}),  # fast to write; decode cost barely depends on the level
    "WEBP": ("WEBP", {"quality": 85}),
    "HEIF": ("HEIF", {"quality": 85}),
    # With an embedded 640 px thumbnail, which draft() decodes instead of the image (iPhones embed ~320 px,
    # too small for min_side=320, so they take the plain HEIF row's path).
    "HEIF+thumbnail": ("HEIF", {"quality": 85, "thumbnails": [640]}),
}


def synthetic_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients and blobs plus sensor-like noise: JPEG sizes land near a phone's (~2-4 MB at 12 MP)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    channels = []
    for phase in rng.uniform(0, 2 * np.pi, 3):
        wave = np.sin(6 * x + phase) * np.cos(4 * y - phase) + np.sin(23 * x * y + phase)
        channels.append(96 + 60 * wave + 40 * y)
    pixels = np.stack(channels, axis=-1)
    pixels += rng.normal(0.0, 6.0, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encode(image: Image.Image, name: str) -> bytes | None:
    """The image encoded as ENCODINGS[name], or None when this Pillow cannot write it (HEIF without encoder)."""
    fmt, options = ENCODINGS[name]
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt, **options)
    except (KeyError, OSError, ValueError, RuntimeError):
        return None
    return buffer.getvalue()


def full_decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.convert("RGB")


def full_decode_resized(data: bytes, min_side: int) -> Image.Image:
    image = full_decode(data)
    scale = min_side / min(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def time_ms(work: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median and best of ``repeats`` runs after one warm-up, in milliseconds."""
    work()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": round(statistics.median(samples), 2), "min_ms": round(min(samples), 2)}


def run(width: int, height: int, repeats: int, min_side: int) -> dict[str, object]:
    photo = synthetic_photo(width, height)
    rows = []
    for name in ENCODINGS:
        data = encode(photo, name)
        if data is None:
            rows.append({"format": name, "skipped": "Pillow cannot encode it here"})
            continue
        out_size = decode_photo(data, min_side=min_side).image.size
        rows.append(
            {
                "format": name,
                "bytes": len(data),
                "output_size": list(out_size),
                "full": time_ms(lambda data=data: full_decode(data), repeats),
                "full_resize": time_ms(lambda data=data: full_decode_resized(data, min_side), repeats),
                "decode_photo": time_ms(lambda data=data: decode_photo(data, min_side=min_side), repeats),
            }
        )
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "photo": {"width": width, "height": height, "megapixels": round(width * height / 1e6, 1)},
        "repeats": repeats,
        "min_side": min_side,
        "environment": environment(),
        "results": rows,
    }


def environment() -> dict[str, object]:
    env: dict[str, object] = {
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine inflates the medians
    }
    try:
        import pillow_heif

        env["pillow_heif"] = pillow_heif.__version__
        env["libheif"] = pillow_heif.libheif_version()
    except ImportError:
        env["pillow_heif"] = None
    return env


def print_table(report: dict[str, object]) -> None:
    photo = report["photo"]
    table = Table(
        title=f"Decode one {photo['width']}x{photo['height']} photo ({photo['megapixels']} MP), "
        f"ms, median / best of {report['repeats']}"
    )
    columns = ("format", "MB", "full", "full+resize", "decode_photo", "vs full", "vs full+resize", "output")
    for column in columns:
        table.add_column(column, justify="left" if column == "format" else "right")
    for row in report["results"]:
        if "skipped" in row:
            table.add_row(row["format"], *["-"] * (len(columns) - 2), row["skipped"])
            continue
        timings = [row[key] for key in ("full", "full_resize", "decode_photo")]
        table.add_row(
            row["format"],
            f"{row['bytes'] / 1e6:.2f}",
            *(f"{t['median_ms']:.1f} / {t['min_ms']:.1f}" for t in timings),
            *(f"{t['min_ms'] / timings[2]['min_ms']:.1f}x" for t in timings[:2]),
            "x".join(map(str, row["output_size"])),
        )
    table.caption = "speed-ups compare best times; medians move with the machine's load"
    Console(width=120).print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 MP photo, 3 repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, help="timed runs per format (default 7, quick 3)")
    parser.add_argument("--min-side", type=int, default=DEFAULT_MIN_SIDE, help="decode_photo's min_side")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)

    width, height = (2016, 1512) if args.quick else (4032, 3024)
    repeats = args.repeats or (3 if args.quick else 7)
    report = run(width, height, repeats, args.min_side)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    Console().print(f"written {args.output}")


if __name__ == "__main__":
    main()
