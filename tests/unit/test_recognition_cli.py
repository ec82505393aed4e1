"""`landmarks recognize` end to end on drawn photos with a bundle built by the shared builder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from shared.recognition import LandmarkInfo, build_bundle_from_embeddings, save_bundle
from workers.cli import app


def _tower(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (200, 260), (140, 190, 235))
    d = ImageDraw.Draw(im)
    j = int(rng.integers(-6, 6))
    d.rectangle([85 + j, 40, 115 + j, 250], fill=(110, 80, 50))
    d.polygon([(70 + j, 60), (100 + j, 5), (130 + j, 60)], fill=(60, 60, 60))
    return im


def _noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (220, 220, 3), dtype=np.uint8))


def test_recognize_prints_json_and_writes_an_explanation(tmp_path: Path) -> None:
    from shared.model import Embedder, EmbedderConfig

    embedder = Embedder(EmbedderConfig(image_size=128), device="cpu", threads=1)
    gallery = embedder.embed([_tower(i) for i in range(6)])
    negatives = embedder.embed([_noise(i) for i in range(6)])
    bundle = build_bundle_from_embeddings(
        version="v-cli",
        model=embedder.describe(),
        landmarks=[LandmarkInfo(1, "tower", "Drawn Tower", "Paintville", "Nowhere", None, None)],
        gallery=gallery,
        gallery_landmarks=np.ones(6, dtype=np.int64),
        non_landmarks=negatives,
        margin_share=0.0,
    )
    folder = save_bundle(bundle, tmp_path / "bundle")
    photo = tmp_path / "tower.jpg"
    _tower(99).save(photo)
    explain = tmp_path / "explain.png"

    result = CliRunner().invoke(
        app, ["recognize", str(photo), "--bundle", str(folder), "--json", "--explain", str(explain)]
    )
    assert result.exit_code == 0, result.output
    line = next(s for s in result.stdout.splitlines() if s.startswith("{"))
    out = json.loads(line)
    assert out["model_version"] == "v-cli" and out["method"] in {"global+verified", "none"}
    assert out["path"] == str(photo)
    with Image.open(explain) as im:  # the decoded (reduced) photo, aspect kept
        assert im.mode == "RGB" and abs(im.width / im.height - 200 / 260) < 0.02


def test_recognize_without_a_bundle_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["recognize", str(tmp_path / "x.jpg"), "--bundle", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no model bundle" in result.output
