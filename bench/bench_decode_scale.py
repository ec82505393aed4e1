"""A 12-MP phone JPEG to the network's input: which JPEG scale, and which decoder, gets there fastest.

The network resizes a photo's LONG side to ``image_size`` (384). ``decode_photo`` used to be asked for a SHORTER
side of 384, so a 4000 x 3000 JPEG was decoded at 1/4 (1000 x 750 -> 512 x 384, which the network shrank again);
it is now asked for the longer side (``fit="long"``, what the recognizer and model build pass), and 1/8
(500 x 375 -> 384 x 288) holds what the network sees. Rows (median and best of ``--repeats`` decodes, each
ending at the network's input, EXIF read and applied where the row says so):

- ``decode_photo, shorter side (before)``: the project's path before: draft to the shorter side, Lanczos, then
  the network's bilinear resize of the long side;
- ``decode_photo, longer side (now)``: draft to the longer side, one Lanczos resize, nothing left to the network;
- ``pillow draft long, no EXIF``: the bare Pillow calls of the row above (what decode_photo adds: its checks);
- ``simplejpeg long``: simplejpeg (libjpeg-turbo's scaled decode) at the same scale, then Pillow's resize; only
  when simplejpeg is importable (it is not a project dependency: ``pip install --target DIR simplejpeg`` and
  ``PYTHONPATH=DIR`` to measure it).

Two photos, both 4000 x 3000 quality 90: ``phone`` (smooth gradients plus sensor-like noise: ~2.5 MB, a phone's
size) and ``noisy`` (heavy uniform noise: ~6.3 MB, a worst case: the entropy decoding, which no DCT scaling skips,
grows with the bytes). Writes ``bench/results/decode_scale.json``.
Run: ``.venv/bin/python bench/bench_decode_scale.py`` (``taskset -c 0`` for one core).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from bench_decode import synthetic_photo
from PIL import Image

from shared.imaging import decode_photo
from shared.model.preprocess import resize

RESULTS = Path(__file__).resolve().parent / "results" / "decode_scale.json"


def phone_jpeg(size: tuple[int, int] = (4000, 3000)) -> bytes:
    """Gradients plus noise at 12 MP, quality 90: compresses like a photo, not like flat colour."""
    w, h = size
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=-1).astype(np.int16)
    pixels = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def timings_ms(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median and best of ``repeats`` calls: on a shared machine the best is the uncontended cost."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_ms": round(1e3 * statistics.median(times), 2), "best_ms": round(1e3 * min(times), 2)}


def photos() -> dict[str, bytes]:
    out = io.BytesIO()
    synthetic_photo(4000, 3000).save(out, "JPEG", quality=90)
    return {"phone": out.getvalue(), "noisy": phone_jpeg()}


def rows_for(data: bytes, size: int) -> dict[str, Callable[[], Image.Image]]:
    def before() -> Image.Image:
        return resize(decode_photo(data, min_side=size).image, size, "long")

    def now() -> Image.Image:
        return resize(decode_photo(data, min_side=size, fit="long").image, size, "long")

    def pillow_long() -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            im.draft("RGB", (max(1, round(size * w / max(w, h))), max(1, round(size * h / max(w, h)))))
            return resize(im.convert("RGB"), size, "long")

    rows = {
        "decode_photo, shorter side (before)": before,
        "decode_photo, longer side (now)": now,
        "pillow draft long, no EXIF": pillow_long,
    }
    try:
        import simplejpeg

        def simplejpeg_long() -> Image.Image:
            w, h = simplejpeg.decode_jpeg_header(data)[:2]
            small = round(size * min(w, h) / max(w, h))
            pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=small if w < h else size,
                                            min_height=size if w < h else small)  # fmt: skip
            return resize(Image.fromarray(pixels), size, "long")

        rows["simplejpeg long side"] = simplejpeg_long
    except ImportError:
        pass
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    loads = [os.getloadavg()[0]]
    results: dict[str, dict[str, object]] = {}
    for photo, data in photos().items():
        print(f"{photo}: {len(data) / 1e6:.2f} MB")
        results[photo] = {"jpeg_bytes": len(data)}
        for name, fn in rows_for(data, args.image_size).items():
            r = {**timings_ms(fn, args.repeats), "output": list(fn().size)}
            results[photo][name] = r
            print(f"  {name:40s} median {r['median_ms']:8.2f} ms, best {r['best_ms']:8.2f} ms -> {r['output']}")
    loads.append(os.getloadavg()[0])
    print(f"load average (1 min) {loads[0]:.2f} -> {loads[1]:.2f}, {os.cpu_count()} CPUs")
    report = {
        "bench": "decode_scale",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_avg_1m": loads,
        "affinity": sorted(os.sched_getaffinity(0)),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
