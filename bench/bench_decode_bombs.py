"""Peak memory of decoding pixel bombs under the pixel cap: the 16-bit PNG and 32-bit integer TIFF of #19.

Each bomb (196 MP in a few hundred KB, built as the tests build it) is decoded by ``decode_photo`` in a child
process of its own; the child's peak resident memory (``ru_maxrss``) and wall time are printed and written to
``bench/results/decode_bombs.json``. Run from the repository root:
``.venv/bin/python bench/bench_decode_bombs.py [--side 14000]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "decode_bombs.json"
CHILD = (
    "import resource, sys; from shared.imaging import decode_photo; "
    "decode_photo(open(sys.argv[1], 'rb').read()); "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def _bomb_builders() -> dict[str, object]:
    """The builders of tests/unit/test_imaging_hostile.py: the bench measures exactly what the tests decode."""
    spec = importlib.util.spec_from_file_location("bombs", ROOT / "tests" / "unit" / "test_imaging_hostile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"png16": module.grey16_png, "tiff_int32": module.int32_tiff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=14_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, build in _bomb_builders().items():
            path = Path(folder) / name
            build(path, args.side)  # type: ignore[operator]
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, cwd=ROOT, check=True
            )
            rows.append(
                {
                    "bomb": name,
                    "side": args.side,
                    "file_bytes": path.stat().st_size,
                    "peak_rss_mb": round(int(done.stdout.strip()) / 1024, 1),
                    "wall_s": round(time.perf_counter() - t0, 2),
                }
            )
            print(json.dumps(rows[-1]))
    RESULTS.parent.mkdir(exist_ok=True)
    summary = {"when": datetime.now(UTC).isoformat(), "machine": platform.platform(), "rows": rows}
    RESULTS.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
