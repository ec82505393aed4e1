"""The scene prior in the decision: calibrated on penalised non-landmark scores, it lowers the bar for a
landmark-like photo and keeps it for a food photo; bundles carry it and older bundles load without it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.evaluation.scene_calibration import prior_thresholds, with_scene_prior
from shared.index import l2_normalize
from shared.recognition import Bundle, LandmarkInfo, Recognizer, build_bundle_from_embeddings, load_bundle, save_bundle
from shared.recognition.build import candidate_scores
from shared.recognition.calibration import rejected_share
from shared.scenes.tagger import ScenePrior

DIM = 32
WEIGHT = 0.2


class _Precomputed:
    def embed(self, images: list) -> np.ndarray:
        raise AssertionError("decisions only: no images here")


def _world() -> tuple[Bundle, np.ndarray, np.ndarray]:
    """Two landmarks (clusters around axes 0 and 1) and non-landmarks spread over the other axes, all 'food'."""
    rng = np.random.default_rng(7)
    axes = np.eye(DIM, dtype=np.float32)
    gallery = np.concatenate([axes[i] + 0.35 * rng.standard_normal((30, DIM)) for i in (0, 1)]).astype(np.float32)
    ids = np.repeat([1, 2], 30)
    nl = rng.standard_normal((200, DIM)).astype(np.float32)
    nl[:, :2] *= 0.3
    bundle = build_bundle_from_embeddings(
        version="prior-test",
        model={"backbone": "efficientnet_lite2", "embedding_dim": DIM},
        landmarks=(LandmarkInfo(1, "one", "One"), LandmarkInfo(2, "two", "Two")),
        gallery=l2_normalize(gallery),
        gallery_landmarks=ids,
        non_landmarks=l2_normalize(nl),
        margin_share=0.0,
        global_rejection=0.5,  # a lenient centroid gate: the verification bar is what the prior moves
    )
    return bundle, l2_normalize(nl), np.zeros(len(nl), np.float32)


def test_calibrated_prior_rejects_the_same_share_of_non_landmarks() -> None:
    bundle, nl, masses = _world()
    prior = ScenePrior(WEIGHT)
    t = prior_thresholds(bundle, nl, masses, prior)
    s = candidate_scores(
        nl, Recognizer(bundle, _Precomputed()).centroids, Recognizer(bundle, _Precomputed()).references, bundle.decision
    )
    assert rejected_share(s.verification.astype(np.float64) - prior.penalty(masses), t.verification) >= 0.99
    # Non-landmarks all had zero landmark mass: the penalised scores sit WEIGHT lower, and so does the bar.
    assert abs((bundle.thresholds.verification - t.verification) - WEIGHT) < 1e-5
    assert t.global_score == bundle.thresholds.global_score and t.margin == bundle.thresholds.margin


def test_architecture_passes_where_food_is_rejected() -> None:
    bundle, nl, masses = _world()
    tuned = with_scene_prior(bundle, nl, masses, WEIGHT)
    plain, prior = Recognizer(bundle, _Precomputed()), Recognizer(tuned, _Precomputed())
    # Walk a query from the non-landmark region towards landmark one: the first one the prior accepts for a
    # "palace" photo must be one the plain decision rejects.
    rng = np.random.default_rng(3)
    noise = l2_normalize(rng.standard_normal((1, DIM)).astype(np.float32))[0]
    noise[:2] = 0
    found = None
    for a in np.linspace(0, 1, 400):
        q = l2_normalize((a * np.eye(DIM)[0] + (1 - a) * noise)[None].astype(np.float32))
        if prior.decide(q, masses=np.array([1.0]))[0].landmark_id == 1:
            found = q
            break
    assert found is not None, "the prior never accepted the query"
    assert plain.decide(found)[0].landmark_id is None
    assert prior.decide(found, masses=np.array([0.0]))[0].landmark_id is None  # a plate of food
    # Without scene masses (no classifier), the decision is the plain one.
    assert prior.decide(found)[0].landmark_id is None


def test_bundle_keeps_the_prior_and_old_bundles_load_without(tmp_path: Path) -> None:
    bundle, nl, masses = _world()
    tuned = with_scene_prior(bundle, nl, masses, WEIGHT, labels=("architecture",))
    loaded = load_bundle(save_bundle(tuned, tmp_path / "v1"))
    assert loaded.scenes == tuned.scenes and loaded.scenes.prior.weight == WEIGHT
    assert loaded.scenes.prior.labels == ("architecture",)
    folder = save_bundle(bundle, tmp_path / "old")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["scenes"]  # as written before scene tags existed
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = load_bundle(folder)
    assert not old.scenes.prior.enabled and old.scenes.threshold == bundle.scenes.threshold
