"""`landmarks eval --train --mode finetune` on a tiny manifest of drawn photos (64 px, one epoch each, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devtools.stack.testing import drawn_manifest
from shared.evaluation.finetune import tuning_set
from shared.gallery.manifest import read_eval_manifest

LANDMARKS = {"red-square": 0, "blue-disc": 1}  # slug -> drawn_photo kind; anything else draws no landmark


def tiny_manifest(folder: Path) -> Path:
    """2 landmarks x (6 train + 2 test) photos, 6 train + 2 test non-landmark photos."""
    return drawn_manifest(folder, LANDMARKS)


def test_the_backbone_is_tuned_on_train_landmark_photos_only(tmp_path: Path) -> None:
    rows = read_eval_manifest(tiny_manifest(tmp_path))
    chosen, data = tuning_set(rows)
    assert len(chosen) == 12 and len(data.labels) == 12
    assert all(rows[i].split == "train" and rows[i].is_landmark for i in chosen)
    assert set(data.labels.tolist()) == {0, 1} and data.num_landmarks == 2


@pytest.mark.slow
@pytest.mark.parametrize("cached_views", [0, 2])
def test_eval_train_finetune_runs_and_reports_the_tuning(tmp_path: Path, cached_views: int) -> None:
    from workers.cli.main import app

    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "report.json"
    args = ["eval", "--manifest", str(manifest), "--image-size", "64", "--train", "--mode", "finetune"]
    args += ["--blocks", "1", "--finetune-epochs", "1", "--epochs", "1", "--json", str(out)]
    args += ["--cached-views", str(cached_views)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for key in ("landmark_accuracy", "non_landmark_accuracy", "wrong_landmark", "thresholds", "training"):
        assert key in report
    assert report["counts"]["test"] == 6 and report["counts"]["train"] == 18
    assert report["training"]["mode"] == "finetune"  # the bundle carries the tuned backbone
    tuning = report["finetune"]
    assert tuning["blocks"] == 1 and tuning["epochs"] == 1 and tuning["photos"] == 12
    assert tuning["embed"]["photos"] == 24  # every row re-embedded with the tuned backbone, none from a cache
    for part in ("tune", "embed", "head"):
        assert tuning[part]["seconds"] >= 0 and tuning[part]["cpu_seconds"] >= 0
    alone = tuning["without_head"]  # the tuned features under the untrained decision, scored on the same rows
    assert set(alone) == {"landmark_accuracy", "non_landmark_accuracy", "wrong_landmark", "precision", "recall"}
    assert 0.0 <= alone["landmark_accuracy"] <= 1.0 and 0 <= alone["wrong_landmark"] <= 4
    assert "tuned features, no head: landmark_accuracy" in result.output


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    from workers.cli.main import app

    manifest = tiny_manifest(tmp_path)
    result = CliRunner().invoke(app, ["eval", "--manifest", str(manifest), "--train", "--mode", "lora"])
    assert result.exit_code == 2 and "finetune" in result.output
