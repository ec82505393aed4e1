"""Optional int8 (issue #18 item 5): ONNX Runtime static quantisation of the network, calibrated on gallery
photos, against the fp32 graph: speed of the network, and `landmarks eval` with each.

1. The fp32 graph of the settings' network (exported into ``--work`` once);
2. ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations, MinMax) calibrated on ``--calibration``
   train landmark and non-landmark photos of the manifest, each at its own size as the engine runs them;
3. best-of-``--repeats`` network time at 288 x 384 on one thread, fp32 vs int8, same process;
4. unless ``--no-eval``: ``landmarks eval --manifest M`` in this process with the int8 graph (its own embedding
   cache under ``--work``), to compare with the fp32 figures.

Writes ``bench/results/int8.json``. Run from the repository root:
``.venv/bin/python bench/bench_int8.py --manifest ../shared/data/manifest.csv [--no-eval]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "int8.json"


def calibration_inputs(manifest: Path, count: int, embedder: Any) -> list[np.ndarray]:
    from shared.imaging import decode_photo
    from shared.model.ort_engine import to_input
    from shared.model.preprocess import resize

    with manifest.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train"]
    step = max(1, len(rows) // count)
    cfg, spec = embedder.config, embedder.spec
    out = []
    for row in rows[::step][:count]:
        image = decode_photo(manifest.parent / row["path"], min_side=cfg.image_size).image
        out.append(to_input(resize(image, cfg.image_size, cfg.resize), spec.mean, spec.std))
    return out


def quantize(fp32: Path, int8: Path, inputs: list[np.ndarray]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.items, None)
            return None if x is None else {"image": x}

    quantize_static(
        str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip


def best_ms(path: Path, repeats: int) -> float:
    from shared.model.ort_engine import OrtNetwork

    net = OrtNetwork(path, threads=1)
    x = np.random.default_rng(0).normal(size=(1, 3, 288, 384)).astype(np.float32)
    net.run(x, ["embedding"])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net.run(x, ["embedding"])
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path(".landmarks") / "int8")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["LANDMARKS_STATE_DIR"] = str(args.work / "state")  # the int8 rows never meet the fp32 cache
    from shared.model import factory
    from shared.settings import get_settings

    rec = get_settings().recognition
    fp32_embedder = factory.embedder_from_settings(rec, cached=False, engine="onnxruntime", onnx_cache=args.work)
    fp32 = fp32_embedder.onnx_model_path()
    int8 = args.work / f"{fp32.stem}.int8.onnx"
    if not int8.is_file():
        quantize(fp32, int8, calibration_inputs(args.manifest, args.calibration, fp32_embedder))
    report: dict[str, Any] = {
        "bench": "int8",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_avg_1m": os.getloadavg()[0],
        "calibration_photos": args.calibration,
        "fp32_best_ms": best_ms(fp32, args.repeats),
        "int8_best_ms": best_ms(int8, args.repeats),
        "fp32_mb": fp32.stat().st_size / 1e6,
        "int8_mb": int8.stat().st_size / 1e6,
    }
    print(json.dumps(report, indent=2))
    if not args.no_eval:
        plain = factory.embedder_from_settings

        def int8_embedder(rec: Any, **kwargs: Any) -> Any:
            return plain(rec, **{**kwargs, "cached": False, "engine": "onnxruntime", "onnx_path": int8})

        factory.embedder_from_settings = int8_embedder  # type: ignore[assignment]
        from workers.cli.recognition import eval_command

        eval_command(manifest=args.manifest, json_out=args.work / "eval_int8.json")
        report["eval"] = json.loads((args.work / "eval_int8.json").read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
