"""`eval --train` on the real development corpus: a head trained on cached features against raw backbone features
through the same cross-fitted (out-of-fold) calibration (an identity head, zero epochs), both at 99% non-landmark
rejection. Embeddings come from the evaluator's cache under the state dir (the first run embeds 1,485 photos);
training runs 6 times (5 folds + final), a few minutes on 2 busy cores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.shared_data, pytest.mark.slow]


@pytest.fixture(scope="module")
def reports(shared_data: Path) -> dict[str, Any]:
    manifest = shared_data / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"{manifest} is absent")
    from shared.evaluation.recognition import EvalOptions, embed_rows, evaluate_embeddings
    from shared.evaluation.trained_head import train_and_evaluate
    from shared.gallery.manifest import read_eval_manifest
    from shared.imaging import fit_for_resize
    from shared.model import Embedder, EmbedderConfig
    from shared.settings import RecognitionSettings, Settings
    from shared.training.trainer import TrainConfig

    rec = RecognitionSettings()
    config = EmbedderConfig(backbone=rec.backbone, pooling=rec.pooling, image_size=rec.image_size)
    rows = read_eval_manifest(manifest)
    embedder = Embedder(config, device=rec.device, batch_size=rec.batch_size)
    embedded = embed_rows(
        rows,
        embedder,
        cache_dir=Settings().state_dir / "embeddings" / embedder.cache_key(),
        min_side=config.image_size,
        fit=fit_for_resize(config.resize, config.decode_fit),
    )
    assert not embedded.failed
    options = EvalOptions(rejection=rec.non_landmark_rejection)
    raw_head = TrainConfig(embedding_dim=embedder.dim, identity_init=True, epochs=0, curriculum=False)
    raw, _ = train_and_evaluate(rows, embedded, embedder.describe(), options, raw_head)
    trained, _ = train_and_evaluate(rows, embedded, embedder.describe(), options, TrainConfig())
    untrained = evaluate_embeddings(rows, embedded, embedder.describe(), options)  # what model build ships untrained
    return {"raw": raw, "trained": trained, "untrained": untrained}


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in ("landmark_accuracy", "non_landmark_accuracy", "wrong_landmark")}


def test_trained_head_is_calibrated_out_of_fold_and_keeps_rejecting_non_landmarks(reports: dict[str, Any]) -> None:
    trained = reports["trained"]
    assert trained["calibration_method"] == "out-of-fold"
    assert trained["training"]["final_loss"] < trained["training"]["first_loss"]
    assert trained["non_landmark_accuracy"] >= 0.97, _summary(trained)  # 84 test photos: at most 2 accepted


def test_trained_head_beats_raw_backbone_features(reports: dict[str, Any]) -> None:
    # Against raw features through the same out-of-fold calibration, and against the untrained decision as
    # shipped (calibrated in-sample, which raw features allow: nothing was trained on the calibration photos).
    raw, trained, untrained = reports["raw"], reports["trained"], reports["untrained"]
    assert trained["landmark_accuracy"] > raw["landmark_accuracy"], (_summary(raw), _summary(trained))
    assert trained["landmark_accuracy"] > untrained["landmark_accuracy"], (_summary(untrained), _summary(trained))


def test_trained_head_reaches_the_issue_target(reports: dict[str, Any]) -> None:
    # At the 99% operating point (calibrated on held-out non-landmarks), no more test non-landmarks accepted than
    # with raw features: the one both accept is the unknown Summer Palace (issue #3's gap, not training's).
    raw, trained = reports["raw"], reports["trained"]
    assert trained["non_landmark_accuracy"] >= raw["non_landmark_accuracy"], (_summary(raw), _summary(trained))
    assert trained["landmark_accuracy"] >= 0.90, _summary(trained)
    assert trained["wrong_landmark"] <= 3, _summary(trained)
