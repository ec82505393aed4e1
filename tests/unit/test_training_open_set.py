"""A trained version carries an open-set score fitted on stand-ins its heads never saw (shared.training.open_set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shared.training.open_set as training_open_set
from shared.model.head import project
from shared.recognition.bundle import LandmarkInfo, load_bundle, save_bundle
from shared.recognition.recognizer import Recognizer
from shared.training.fit import FeatureDataset, train_model
from shared.training.trainer import TrainConfig, TrainingData
from shared.versions.registry import open_set_warning

CLASSES = 4


def blobs(n_per: int, classes: int, dim: int, *, n_neg: int, seed: int = 0, spread: float = 0.5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centers] + [rng.normal(size=(n_neg, dim))])
    y = np.concatenate([np.full(n_per, c) for c in range(classes)] + [np.full(n_neg, classes)])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def dataset(seed: int = 0) -> tuple[FeatureDataset, list[LandmarkInfo], np.ndarray, np.ndarray]:
    x, y = blobs(12, CLASSES, 24, n_neg=30, seed=seed)
    landmarks = [LandmarkInfo(10 + i, f"lm{i}", f"Landmark {i}", country="Italy") for i in range(CLASSES)]
    regions = ["europe" if v < CLASSES else "" for v in y]
    return FeatureDataset(x, TrainingData(y, CLASSES, regions)), landmarks, x, y


def config() -> TrainConfig:
    return TrainConfig(loss="center", epochs=3, embedding_dim=16, batch_size=32, curriculum=False, input_dropout=0.0)


def test_without_unknown_rejection_a_trained_version_has_no_open_set_score() -> None:
    ds, landmarks, _, _ = dataset()
    trained = train_model(ds, landmarks, config(), version="t", model={}, folds=2)
    assert trained.bundle.open_set is None
    assert open_set_warning("t", trained.summary(0.99)) is not None


def test_a_trained_version_gets_an_open_set_score_its_warning_and_list_see(tmp_path: Path) -> None:
    ds, landmarks, x, _ = dataset()
    trained = train_model(ds, landmarks, config(), version="t", model={}, folds=2, unknown_rejection=0.9)
    bundle = trained.bundle
    assert bundle.open_set is not None
    # aligned with the bundle's references, in the trained head's space
    assert len(bundle.open_set.reference_density) == len(bundle.references)
    assert bundle.open_set.negatives.shape[1] == bundle.references.shape[1]
    metrics = trained.summary(0.99)
    assert metrics["open_set_unknown_rejection"] == 0.9
    assert metrics["open_set_cross_fitted_space"] is True
    assert metrics["open_set_stand_ins"] == int(len(ds.landmark_rows))  # every landmark left out once
    assert metrics["open_set_stand_in_landmark_rejection"] >= 0.9 - 1e-9
    assert bundle.metrics["open_set_unknown_rejection"] == 0.9
    assert open_set_warning("t", metrics) is None

    loaded = load_bundle(save_bundle(bundle, tmp_path / "t"))
    assert loaded.open_set is not None and loaded.open_set.threshold == bundle.open_set.threshold
    results = Recognizer(loaded, _NoEmbedder()).decide(project(loaded.head_state, x[:20]), [None] * 20)
    scored = [r for r in results if r.open_set_score is not None]
    assert scored and all(set(r.open_set_features or {}) for r in scored)


def test_stand_ins_are_scored_by_heads_trained_without_their_landmark(monkeypatch: pytest.MonkeyPatch) -> None:
    ds, landmarks, _, _ = dataset(seed=1)
    seen: list[tuple[set[int], int]] = []
    real = training_open_set.train_on_features

    def spy(features: np.ndarray, data: TrainingData, cfg: TrainConfig, **kw: Any) -> Any:
        seen.append((set(np.unique(data.labels).tolist()) - {data.no_landmark}, len(features)))
        return real(features, data, cfg, **kw)

    monkeypatch.setattr(training_open_set, "train_on_features", spy)
    train_model(ds, landmarks, config(), version="t", model={}, folds=2, unknown_rejection=0.9)
    everything = set(range(CLASSES))
    for c in range(CLASSES):  # one retrained head per left-out landmark, which never saw it
        assert everything - {c} in [classes for classes, _ in seen], (c, seen)
    # the known photos, in five folds, each scored by a head trained without them (all landmarks still known)
    partial = [n for classes, n in seen if classes == everything]
    assert len(partial) == 5 and all(n < len(ds.features) for n in partial)


class _NoEmbedder:
    def embed(self, images: Any) -> np.ndarray:
        raise RuntimeError("decides on precomputed embeddings only")
