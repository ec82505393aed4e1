"""Training the head on synthetic cached features: losses, center term, curriculum, cross-fitted calibration,
and a trained head that loads in the Embedder and survives the bundle round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shared.model.head import project
from shared.recognition.bundle import LandmarkInfo, load_bundle, save_bundle
from shared.training.crossfit import accepted, joint_threshold, score
from shared.training.curriculum import curriculum_stages, region_of, stage_mask
from shared.training.fit import FeatureDataset, train_model
from shared.training.losses import LOSSES, CenterLoss
from shared.training.trainer import TrainConfig, TrainingData, stage_plan, train_on_features


def blobs(n_per: int, classes: int, dim: int, *, n_neg: int, seed: int = 0, spread: float = 0.35):
    """Landmark classes as tight clusters, non-landmarks as unstructured noise; rows L2-normalised."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centers] + [rng.normal(size=(n_neg, dim))])
    y = np.concatenate([np.full(n_per, c) for c in range(classes)] + [np.full(n_neg, classes)])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x, y


def small(loss: str = "center", **kw) -> TrainConfig:
    base = dict(loss=loss, epochs=8, embedding_dim=16, batch_size=32, curriculum=False, input_dropout=0.0)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("loss", LOSSES)
def test_a_short_run_lowers_the_loss(loss: str) -> None:
    x, y = blobs(30, 4, 24, n_neg=40)
    result = train_on_features(x, TrainingData(y, 4, [""] * len(y)), small(loss))
    assert len(result.history) == 8
    assert result.history[-1].loss < 0.7 * result.history[0].loss
    assert set(result.head_state) >= {"fc.weight", "fc.bias", "bn.weight", "bn.running_mean", "bn.running_var"}


def test_center_loss_pulls_same_class_embeddings_together() -> None:
    torch.manual_seed(0)
    emb = torch.randn(40, 8, requires_grad=True)
    labels = torch.arange(40) % 4
    loss_fn = CenterLoss(5, 8, ignore_index=4)
    with torch.no_grad():
        loss_fn.centers[:4] = torch.randn(4, 8)
    opt = torch.optim.SGD([emb], lr=10.0)  # the loss is a mean over 40 rows

    def spread() -> float:
        e = emb.detach()
        return float(sum(e[labels == c].var(dim=0).sum() for c in range(4)))

    before = spread()
    for _ in range(20):
        opt.zero_grad()
        loss_fn(emb, labels).backward()
        opt.step()
    assert spread() < 0.1 * before


def test_the_no_landmark_class_gets_no_center_term() -> None:
    loss_fn = CenterLoss(3, 4, ignore_index=2)
    emb = torch.randn(6, 4, requires_grad=True)
    only_negatives = loss_fn(emb, torch.full((6,), 2))
    assert float(only_negatives.detach()) == 0.0
    only_negatives.backward()
    assert emb.grad is not None and float(emb.grad.abs().sum()) == 0.0
    # A full training run never moves the no-landmark center away from its initial zero.
    x, y = blobs(20, 3, 12, n_neg=30)
    cfg = small("center", center_weight=1.0)
    from shared.training import trainer

    seen: list[CenterLoss] = []
    original = trainer.CenterLoss

    class Spy(original):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            seen.append(self)

    trainer.CenterLoss = Spy
    try:
        train_on_features(x, TrainingData(y, 3, [""] * len(y)), cfg)
    finally:
        trainer.CenterLoss = original
    centers = seen[0].centers.detach()
    assert float(centers[3].abs().sum()) == 0.0
    assert float(centers[:3].abs().sum()) > 0.0


def test_curriculum_adds_one_region_per_stage() -> None:
    assert region_of("Italy") == "europe" and region_of("Peru") == "south_america"
    assert region_of("Atlantis") == "other" and region_of("Italy", "custom") == "custom"
    regions = ["europe"] * 5 + ["asia"] * 3 + ["africa"] * 2
    assert curriculum_stages(regions) == [("europe",), ("europe", "asia"), ("europe", "asia", "africa")]
    assert curriculum_stages(regions, ["africa"])[0] == ("africa",)
    mask = stage_mask([*regions, ""], ("europe",))
    assert mask.tolist() == [True] * 5 + [False] * 5 + [True]  # the no-landmark sample is in every stage

    y = np.array([0] * 5 + [1] * 3 + [2] * 2 + [3] * 4)
    data = TrainingData(y, 3, [*regions, "", "", "", ""])
    plan = stage_plan(data, small(curriculum=True, stage_epochs=2, epochs=5))
    assert [p[0] for p in plan] == curriculum_stages(regions)
    assert [int(p[1].sum()) for p in plan] == [9, 12, 14]
    assert [p[2] for p in plan] == [2, 2, 5]

    x, _ = blobs(1, 14, 8, n_neg=0)
    x = np.resize(x, (14, 8)).astype(np.float32)
    result = train_on_features(x, data, small(curriculum=True, stage_epochs=1, epochs=2, batch_size=4))
    assert [(h.stage, h.regions) for h in result.history] == [
        (1, ("europe",)),
        (2, ("europe", "asia")),
        (3, ("europe", "asia", "africa")),
        (3, ("europe", "asia", "africa")),
    ]


def test_joint_threshold_lets_through_at_most_the_allowed_share() -> None:
    values = np.linspace(0, 1, 200)
    passed = np.ones(200, dtype=bool)
    t = joint_threshold(values, passed, 0.99)
    assert np.sum(values > t) == 2
    assert joint_threshold(values, np.zeros(200, dtype=bool), 0.99) == -1.0


def _dataset(x: np.ndarray, y: np.ndarray, classes: int) -> tuple[FeatureDataset, list[LandmarkInfo]]:
    landmarks = [LandmarkInfo(10 + i, f"lm{i}", f"Landmark {i}", country="Italy") for i in range(classes)]
    regions = ["europe" if v < classes else "" for v in y]
    return FeatureDataset(x, TrainingData(y, classes, regions)), landmarks


@pytest.mark.slow
def test_cross_fitted_calibration_does_not_collapse_where_in_sample_does() -> None:
    # High-dimensional noise negatives: a head memorises the ones it trains on, so in-sample they score far
    # below fresh ones and an in-sample threshold lets fresh negatives through.
    classes, dim = 3, 64
    x, y = blobs(25, classes, dim, n_neg=60, seed=1, spread=0.6)
    fresh, _ = blobs(1, 1, dim, n_neg=200, seed=2)
    fresh = fresh[1:]
    ds, landmarks = _dataset(x, y, classes)
    cfg = small("center", epochs=40, embedding_dim=32, lr_head=3e-3)
    rates = {}
    for folds in (0, 4):
        trained = train_model(ds, landmarks, cfg, version="t", model={}, folds=folds, use_gate=True)
        s = score(trained.bundle, project(trained.head_state, fresh), trained.gate)
        rates[trained.calibration.method] = float(accepted(s, trained.calibration).mean())
    assert rates["out-of-fold"] <= 0.05, rates
    assert rates["in-sample"] > 2 * rates["out-of-fold"] + 0.05, rates


def test_a_trained_head_round_trips_through_the_bundle_and_loads_in_the_embedder(tmp_path: Path) -> None:
    from PIL import Image

    from shared.model import Embedder, EmbedderConfig

    classes = 3
    x, y = blobs(12, classes, 1280, n_neg=15, seed=3)
    ds, landmarks = _dataset(x, y, classes)
    trained = train_model(ds, landmarks, small(embedding_dim=32, epochs=3), version="v-test", model={}, folds=3)
    folder = save_bundle(trained.bundle, tmp_path / "v-test")
    loaded = load_bundle(folder)
    assert loaded.head_state is not None and loaded.embedding_dim == 1280 + 32  # raw feature kept beside the head
    for key, value in trained.head_state.items():
        assert torch.equal(torch.as_tensor(loaded.head_state[key]), value)
    assert loaded.thresholds == trained.bundle.thresholds
    assert loaded.model["presence_gate"]["threshold"] == trained.calibration.gate_threshold

    embedder = Embedder(EmbedderConfig(image_size=64), device="cpu", pretrained=False, head_state=loaded.head_state)
    out = embedder.embed([Image.new("RGB", (80, 60), (120, 30, 200))])
    assert out.shape == (1, 1280 + 32)
    assert embedder.net is not None
    with torch.inference_mode():
        via_net = embedder.net.project(torch.from_numpy(x[:4])).numpy()
    np.testing.assert_allclose(via_net, project(loaded.head_state, x[:4]), atol=1e-5)


def test_out_of_fold_scores_align_folds_that_lack_a_landmark() -> None:
    from dataclasses import fields

    from shared.recognition.build import CandidateScores
    from shared.training.crossfit import ScoreSet

    def part(n: int, ids: list[int]) -> ScoreSet:
        values = {}
        for f in fields(CandidateScores):
            if f.name == "landmark_ids":
                values[f.name] = np.array(ids)
            elif f.name == "all_verification":
                values[f.name] = np.ones((n, len(ids)), np.float32)
            elif f.name == "best_ids":
                values[f.name] = np.full(n, ids[0])
            else:
                values[f.name] = np.zeros(n, np.float32)
        return ScoreSet(CandidateScores(**values), np.zeros(n, np.float32))

    merged = ScoreSet.concat([part(2, [1, 2, 3]), part(3, [1, 3])])
    assert len(merged) == 5
    if hasattr(merged.candidates, "all_verification"):
        assert merged.candidates.all_verification.shape == (5, 3)
        assert np.isneginf(merged.candidates.all_verification[2:, 1]).all()
    assert len(merged.subset(np.array([True, False, True, False, True]))) == 3
