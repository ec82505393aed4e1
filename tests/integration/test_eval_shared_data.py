"""The evaluator on the real development corpus meets the quality target (no training, ImageNet weights).

Target: landmark accuracy >= 0.75 at non-landmark accuracy >= 0.99 and at most 10 test landmark photos given the
wrong landmark. Embeddings are cached under the state dir, so re-runs take seconds; the first run embeds 1,485
photos (about a minute on 2 idle cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.shared_data, pytest.mark.slow]


def test_default_recognition_meets_the_quality_target(shared_data: Path) -> None:
    manifest = shared_data / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"{manifest} is absent")
    from shared.model import Embedder, EmbedderConfig
    from shared.recognition.evaluation import EvalOptions, embed_rows, evaluate_embeddings, read_eval_manifest
    from shared.settings import Settings

    config = EmbedderConfig()  # the defaults, not the environment: this checks what `model build` ships
    rows = read_eval_manifest(manifest)
    embedder = Embedder(config)
    embedded = embed_rows(
        rows,
        embedder,
        cache_dir=Settings().state_dir / "embeddings" / config.key(),
        min_side=config.image_size,
    )
    assert not embedded.failed
    report = evaluate_embeddings(rows, embedded, embedder.describe(), EvalOptions())
    summary = {k: report[k] for k in ("landmark_accuracy", "non_landmark_accuracy", "wrong_landmark")}
    assert report["counts"]["test"] == 300
    assert report["landmark_accuracy"] >= 0.75, summary
    assert report["non_landmark_accuracy"] >= 0.99, summary
    assert report["wrong_landmark"] <= 10, summary
