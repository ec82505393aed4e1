"""The offline evaluator: manifest parsing, metrics, embedding cache, and a small end-to-end run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from shared.evaluation.recognition import EvalOptions, embed_rows, evaluate_embeddings, metrics_for
from shared.gallery.manifest import EvalRow, landmarks_from_rows, read_eval_manifest

HEADER = ["path", "kind", "landmark_id", "landmark_name", "city", "country", "lat", "lon", "split"]


def _row(kind: str, landmark: str | None, split: str = "test") -> EvalRow:
    return EvalRow(Path("x.jpg"), kind, landmark, "", "", "", None, None, split)


def test_metrics_count_right_wrong_and_missed() -> None:
    rows = [_row("landmark", "a"), _row("landmark", "a"), _row("landmark", "b"), _row("non_landmark", None)] + [
        _row("non_landmark", None)
    ]
    m = metrics_for(rows, ["a", "b", None, None, "a"])
    assert m["landmark_accuracy"] == pytest.approx(1 / 3)
    assert m["wrong_landmark"] == 1 and m["missed_landmark"] == 1
    assert m["non_landmark_accuracy"] == pytest.approx(0.5) and m["false_accepts"] == 1
    assert m["precision"] == pytest.approx(1 / 3)  # 3 accepted, 1 right
    assert m["recall"] == pytest.approx(1 / 3)


def _scene(kind: int, seed: int) -> Image.Image:
    """Three drawn "landmarks" (a shape and palette each, jittered) and random clutter for non-landmarks."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (240, 180), (135, 180, 230))
    d = ImageDraw.Draw(im)
    j = [int(v) for v in rng.integers(-8, 8, 4)]
    if kind == 0:
        d.polygon([(60 + j[0], 160), (120 + j[1], 30 + j[2]), (180 + j[3], 160)], fill=(200, 170, 90))
    elif kind == 1:
        d.ellipse([50 + j[0], 40 + j[1], 190 + j[2], 170 + j[3]], fill=(120, 40, 40))
        d.rectangle([100, 10, 140, 60], fill=(230, 230, 230))
    elif kind == 2:
        for x in range(30, 220, 30):
            d.rectangle([x + j[0] // 2, 50 + j[1], x + 15, 170], fill=(90, 90, 90))
    else:
        arr = rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)
        return Image.fromarray(arr)
    return im


def _write_manifest(tmp_path: Path) -> Path:
    lines = []
    for kind in range(4):
        for i in range(6):
            name = f"k{kind}_{i}.png"
            _scene(kind, seed=kind * 100 + i).save(tmp_path / name)
            split = "test" if i >= 4 else "train"
            if kind == 3:
                lines.append([name, "non_landmark", "", "", "", "", "", "", split])
            else:
                lines.append([name, "landmark", f"lm{kind}", f"Landmark {kind}", "City", "Land", "1.0", "2.0", split])
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(lines)
    return path


def test_manifest_parsing_and_landmark_ids(tmp_path: Path) -> None:
    rows = read_eval_manifest(_write_manifest(tmp_path))
    assert len(rows) == 24 and rows[0].path.is_absolute() and rows[0].lat == 1.0
    lms = landmarks_from_rows(rows)
    assert [(lm.id, lm.slug) for lm in lms] == [(1, "lm0"), (2, "lm1"), (3, "lm2")]
    assert len(read_eval_manifest(tmp_path / "manifest.csv", limit=6)) == 6
    bad = tmp_path / "bad.csv"
    bad.write_text("path,kind\nx.jpg,landmark\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_eval_manifest(bad)


def test_end_to_end_with_the_real_network_and_cache(tmp_path: Path) -> None:
    from shared.model import Embedder, EmbedderConfig

    rows = read_eval_manifest(_write_manifest(tmp_path))
    embedder = Embedder(EmbedderConfig(image_size=128), device="cpu", threads=1)
    cache = tmp_path / "cache"
    first = embed_rows(rows, embedder, cache_dir=cache, min_side=128)
    assert first.embedded == 24 and first.embeddings.shape == (24, 1280) and not first.failed
    second = embed_rows(rows, embedder, cache_dir=cache, min_side=128)
    assert second.embedded == 0
    np.testing.assert_allclose(second.embeddings, first.embeddings)
    report = evaluate_embeddings(rows, first, embedder.describe(), EvalOptions(margin_share=0.0))
    for key in ("landmark_accuracy", "non_landmark_accuracy", "wrong_landmark", "precision", "recall"):
        assert key in report
    assert report["counts"]["test"] == 8 and report["counts"]["landmark"] == 6
    assert set(report["thresholds"]) == {"global_score", "verification", "geo", "margin", "per_landmark"}
    assert report["ms_per_photo"] > 0
