"""A 12-MP phone JPEG to the network's input: which JPEG scale, and which decoder, gets there fastest.

The network resizes a photo's LONG side to ``image_size`` (384); ``decode_photo`` is asked for a SHORTER side of
``min_side`` (384 as well), so a 4000 x 3000 JPEG is decoded at 1/4 (1000 x 750) when 1/8 (500 x 375) already holds
the 384 x 288 the network sees. Rows (median and best of ``--repeats`` decodes, each with the resize to the input):

- ``decode_photo``: the project's path today (Pillow, draft to shorter side ``min_side``, resize, EXIF);
- ``pillow draft long``: Pillow's draft to the smallest scale whose LONG side holds ``image_size``, then resize;
- ``simplejpeg long``: simplejpeg (libjpeg-turbo's scaled decode) at that same scale, then Pillow's resize;
  only when simplejpeg is importable (it is not a project dependency: ``pip install --target DIR simplejpeg`` and
  ``PYTHONPATH=DIR`` to measure it).

Writes ``bench/results/decode_scale.json``. Run: ``.venv/bin/python bench/bench_decode_scale.py``.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    data = phone_jpeg()
    size = args.image_size

    def today() -> Image.Image:
        return resize(decode_photo(data, min_side=size).image, size, "long")

    def pillow_long() -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            im.draft("RGB", (max(1, round(size * w / max(w, h))), max(1, round(size * h / max(w, h)))))
            return resize(im.convert("RGB"), size, "long")

    rows = {"decode_photo (draft to shorter side)": today, "pillow draft long side": pillow_long}
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
    results = {}
    for name, fn in rows.items():
        results[name] = {**timings_ms(fn, args.repeats), "output": list(fn().size)}
        r = results[name]
        print(f"{name:40s} median {r['median_ms']:8.2f} ms, best {r['best_ms']:8.2f} ms -> {r['output']}")
    report = {
        "bench": "decode_scale",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "jpeg_bytes": len(data),
        "load_avg_1m": os.getloadavg()[0],
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
