"""On real photos (``../shared/data`` test rows): ONNX Runtime, one photo per run at its own size, embeds every
photo as torch does (cosine >= 0.9999, the issue's bar) with the default network, scene logits included."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from shared.imaging import decode_photo
from shared.model import Embedder, EmbedderConfig

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def test_every_test_photo_embeds_alike_in_both_engines(shared_data: Path, tmp_path: Path) -> None:
    with (shared_data / "manifest.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    config = EmbedderConfig()
    engines = {
        name: Embedder(config, device="cpu", threads=1, classifier=True, engine=name, onnx_cache=tmp_path)
        for name in ("torch", "onnxruntime")
    }
    worst, worst_logit = 1.0, 0.0
    for row in rows:
        image = decode_photo(shared_data / row["path"], min_side=config.image_size).image
        (a, la), (b, lb) = (e.embed_with_logits([image]) for e in engines.values())
        worst = min(worst, float((a * b).sum()))
        worst_logit = max(worst_logit, float(np.abs(la - lb).max()))
    assert len(rows) > 100
    assert worst >= 0.9999, f"lowest cosine {worst}"
    assert worst_logit < 0.05, f"largest logit difference {worst_logit}"
