"""Logits -> label scores, tags above the threshold, landmark-like mass, the prior's penalty and its config."""

from __future__ import annotations

import numpy as np

from shared.scenes import (
    LANDMARK_LABELS,
    SceneConfig,
    ScenePrior,
    label_scores,
    landmark_mass,
    load_mapping,
    scene_tags,
    softmax,
)
from shared.scenes.mapping import NUM_CLASSES

PALACE, CHURCH, PIZZA, TABBY, ALP = 698, 497, 963, 281, 970


def _logits(peaks: dict[int, float]) -> np.ndarray:
    x = np.zeros(NUM_CLASSES, np.float32)
    for i, v in peaks.items():
        x[i] = v
    return x


def test_softmax_rows_sum_to_one() -> None:
    p = softmax(np.random.default_rng(0).standard_normal((3, NUM_CLASSES)) * 5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert (p >= 0).all()


def test_label_score_sums_its_classes() -> None:
    m = load_mapping()
    logits = _logits({PALACE: 6.0, CHURCH: 6.0})
    p = softmax(logits[None])[0]
    scores = label_scores(logits, m)[0]
    arch = m.labels.index("architecture")
    np.testing.assert_allclose(scores[arch], p[m.classes_of("architecture")].sum(), rtol=1e-5)
    assert scores[arch] > p[PALACE]  # palace and church together


def test_tags_keep_labels_above_threshold() -> None:
    m = load_mapping()
    tags = scene_tags(np.stack([_logits({PALACE: 9.0}), _logits({PIZZA: 9.0}), _logits({})]), m, 0.3)
    assert list(tags[0]) == ["architecture"] and tags[0]["architecture"] > 0.5
    assert list(tags[1]) == ["food"]
    assert tags[2] == {}  # uniform: no label reaches 0.3


def test_landmark_mass_is_high_for_palace_low_for_food_and_pets() -> None:
    m = load_mapping()
    mass = landmark_mass(
        np.stack([_logits({PALACE: 9.0}), _logits({ALP: 9.0}), _logits({PIZZA: 9.0}), _logits({TABBY: 9.0})]), m
    )
    assert mass[0] > 0.5 and mass[1] > 0.5
    assert mass[2] < 0.05 and mass[3] < 0.05
    only_arch = landmark_mass(_logits({ALP: 9.0})[None], m, ("architecture",))
    assert only_arch[0] < 0.05


def test_prior_penalty_and_config_round_trip() -> None:
    prior = ScenePrior(weight=0.2)
    np.testing.assert_allclose(prior.penalty(np.array([1.0, 0.0, 0.5, 1.5])), [0.0, 0.2, 0.1, 0.0])
    assert not ScenePrior().enabled and prior.enabled
    hinge = ScenePrior(weight=0.2, saturation=0.1)  # full penalty at mass 0, none from mass 0.1 up
    np.testing.assert_allclose(hinge.penalty(np.array([0.0, 0.05, 0.1, 0.6])), [0.2, 0.1, 0.0, 0.0])
    cfg = SceneConfig(
        threshold=0.3, prior=ScenePrior(0.1, ("architecture",), 0.2, {"verification": 0.5}), mapping_digest="ab"
    )
    assert SceneConfig.from_dict(cfg.to_dict()) == cfg
    old = SceneConfig.from_dict(None)  # a bundle written before scene tags
    assert old == SceneConfig() and old.prior.labels == LANDMARK_LABELS and not old.prior.enabled
