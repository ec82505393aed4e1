"""Scene tags and the scene prior on the real development corpus (../shared/data).

Logits and embeddings come from one forward pass per photo and are cached under the state dir (the evaluator's
embedding cache holds no logits); the first run embeds 1,485 photos. The prior is tuned on the train rows only
(2-fold cross-fitting) and the shipped default must agree with what that tuning chooses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.shared_data, pytest.mark.slow]


@pytest.fixture(scope="module")
def corpus(shared_data: Path) -> tuple[list[Any], np.ndarray, np.ndarray]:
    manifest = shared_data / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"{manifest} is absent")
    from shared.evaluation.scenes import embed_rows_with_logits
    from shared.gallery.manifest import read_eval_manifest
    from shared.imaging import fit_for_resize
    from shared.model import Embedder, EmbedderConfig
    from shared.model.embedder import DECODE_KEY
    from shared.settings import Settings

    config = EmbedderConfig()  # the shipped defaults
    rows = read_eval_manifest(manifest)
    embeddings, logits, failed = embed_rows_with_logits(
        rows,
        Embedder(config, classifier=True),
        cache_dir=Settings().state_dir / "scenes" / f"{config.key()}_{DECODE_KEY}",
        min_side=config.image_size,
        fit=fit_for_resize(config.resize, config.decode_fit),
    )
    assert not failed
    return rows, embeddings, logits


def test_scene_mass_separates_landmark_photos_from_everyday_ones(
    corpus: tuple[list[Any], np.ndarray, np.ndarray],
) -> None:
    from shared.scenes import landmark_mass, load_mapping, scene_tags

    rows, _, logits = corpus
    m = load_mapping()
    mass = landmark_mass(logits, m)
    lm = np.array([r.is_landmark for r in rows])
    assert np.median(mass[lm]) > 0.3
    assert np.mean(mass[~lm] < 0.1) > 0.85  # everyday photos: animals, objects, food
    tags = scene_tags(logits[lm], m)
    landmark_like = {"architecture", "mountains", "beach_sea", "bridge", "lake_river"}
    assert np.mean([bool(landmark_like & set(t)) for t in tags]) > 0.8


def test_shipped_prior_default_matches_train_tuning(corpus: tuple[list[Any], np.ndarray, np.ndarray]) -> None:
    from shared.evaluation.recognition import EvalOptions
    from shared.evaluation.scenes import compare_prior
    from shared.model import EmbedderConfig
    from shared.scenes import SceneConfig

    rows, embeddings, logits = corpus
    report = compare_prior(rows, embeddings, logits, EmbedderConfig().to_dict(), EvalOptions())
    chosen = report["chosen"]
    assert report["tuning"] and all(t["weight"] >= 0 for t in report["tuning"])
    assert SceneConfig().prior.enabled == (chosen["weight"] > 0), (
        f"train-only tuning chose {chosen}: test {report['test_with_prior']} vs {report['test_without_prior']}; "
        "update the default ScenePrior to match"
    )
    if chosen["weight"] == 0:
        assert report["test_with_prior"] == report["test_without_prior"]
