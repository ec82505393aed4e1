"""Copy a demo folder (``landmarks demo prepare --out DIR``) small enough to travel to a lent GPU machine.

Keeps one gallery photo per landmark (its original view), the first ``--calibration`` everyday photos and every
upload, each re-encoded at most ``--side`` pixels on its long side, with the matching ``eval.csv`` rows and the
attribution file: about 10 MB instead of 78 MB. ``bench_recognize.py`` re-encodes the uploads as 12 MP phone
photos itself, so the burst it times is the same either way. Usage:
``.venv/bin/python bench/shrink_demo.py SRC DST [--side 640] [--calibration 40]``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--side", type=int, default=640)
    parser.add_argument("--calibration", type=int, default=40)
    args = parser.parse_args()
    with (args.src / "eval.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames or [], list(reader)
    kept, calibration = [], 0
    for row in rows:
        train = row["split"] == "train"
        if train and row["kind"] == "landmark" and "_00_" not in Path(row["path"]).name:
            continue  # augmented views of the gallery: the original is enough for a model to time
        if train and row["kind"] != "landmark":
            calibration += 1
            if calibration > args.calibration:
                continue
        kept.append(row)
    for row in kept:
        with Image.open(args.src / row["path"]) as im:
            image = im.convert("RGB")
        image.thumbnail((args.side, args.side), Image.Resampling.LANCZOS)
        out = args.dst / row["path"]
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out, "JPEG", quality=88)
    with (args.dst / "eval.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    shutil.copy(args.src / "ATTRIBUTION.txt", args.dst / "ATTRIBUTION.txt")
    print(f"{len(kept)} photos in {args.dst}")


if __name__ == "__main__":
    main()
