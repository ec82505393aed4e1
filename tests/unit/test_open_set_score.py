"""The open-set score: calibrated on landmarks left out of the gallery, stored in the bundle, applied by the
decision to acceptances without GPS (synthetic embeddings: a cluster per landmark)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shared.index import LandmarkIndex, l2_normalize
from shared.recognition.build import (
    CandidateScores,
    build_bundle_from_embeddings,
    calibrate_thresholds,
    candidate_scores,
)
from shared.recognition.bundle import NEGATIVE_BANK, BundleIntegrityError, LandmarkInfo, load_bundle, save_bundle
from shared.recognition.decision import METHOD_GEO, METHOD_NONE, METHOD_VERIFIED, DecisionParams, Thresholds
from shared.recognition.open_set import (
    FEATURES,
    LEAVE_ONE_OUT_LANDMARKS,
    OpenSetFeatures,
    fit_open_set,
    landmark_folds,
    logistic_regression,
    passes_rule,
    reference_density,
    threshold_after_rule,
)
from shared.recognition.recognizer import Recognizer

DIM = 48
KNOWN = 12
STYLES = 3


class NoEmbedder:
    def embed(self, images: object) -> np.ndarray:
        raise AssertionError("decides on given embeddings only")


def clusters(centres: np.ndarray, per: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + spread * rng.normal(size=(per, DIM)) for c in centres])
    return l2_normalize(x), np.repeat(np.arange(1, len(centres) + 1), per)


@pytest.fixture(scope="module")
def world() -> dict[str, np.ndarray]:
    """Buildings of a few styles (look-alikes within a style): some are known landmarks, others unknown ones
    drawn by the same process, which is what leaving a known one out imitates; and everyday photos."""
    rng = np.random.default_rng(0)
    styles = l2_normalize(rng.normal(size=(STYLES, DIM)))
    per_style = KNOWN // STYLES + 2
    buildings = l2_normalize(
        np.repeat(styles, per_style, axis=0) + 0.9 * l2_normalize(rng.normal(size=(STYLES * per_style, DIM)))
    )
    is_known = np.tile(np.arange(per_style) < per_style - 2, STYLES)
    gallery, labels = clusters(buildings[is_known], 8, 0.05, seed=1)
    queries, truth = clusters(buildings[is_known], 3, 0.05, seed=2)
    unknown, _ = clusters(buildings[~is_known], 4, 0.05, seed=3)
    everyday = l2_normalize(rng.normal(size=(60, DIM)))
    return {"gallery": gallery, "labels": labels, "queries": queries, "truth": truth, "unknown": unknown,
            "everyday": everyday}  # fmt: skip


def bundle_of(world: dict[str, np.ndarray], unknown_rejection: float | None = 0.9):  # type: ignore[no-untyped-def]
    landmarks = [LandmarkInfo(i, f"l{i}", f"L{i}") for i in range(1, KNOWN + 1)]
    return build_bundle_from_embeddings(
        version="t",
        model={},
        landmarks=landmarks,
        gallery=world["gallery"],
        gallery_landmarks=world["labels"],
        non_landmarks=world["everyday"][:40],
        unknown_rejection=unknown_rejection,
    )


def test_the_score_turns_away_the_asked_share_of_stand_ins_and_keeps_most_gallery_photos(world: dict) -> None:
    bundle = bundle_of(world)
    model = bundle.open_set
    assert model is not None
    m = model.metrics
    assert m["unknown_rejection"] == 0.9 and m["stand_in_landmark_rejection"] >= 0.9
    assert m["stand_ins"] == len(world["gallery"])  # every gallery photo stood in for an unknown once
    assert m["gallery_acceptance"] > 0.5
    assert bundle.metrics["open_set_stand_in_rejection"] == m["stand_in_rejection"]  # shown by model list/status
    assert len(model.reference_density) == len(bundle.references)
    assert model.weights.shape == (len(FEATURES),)


def test_without_the_setting_or_with_one_landmark_there_is_no_score(world: dict) -> None:
    assert bundle_of(world, None).open_set is None
    one = build_bundle_from_embeddings(
        version="t",
        model={},
        landmarks=[LandmarkInfo(1, "l1", "L1")],
        gallery=world["gallery"][world["labels"] == 1],
        gallery_landmarks=world["labels"][world["labels"] == 1],
        non_landmarks=world["everyday"],
        unknown_rejection=0.9,
    )
    assert one.open_set is None


def test_the_decision_turns_away_unknown_landmarks_and_keeps_known_ones(world: dict) -> None:
    plain = Recognizer(bundle_of(world, None), NoEmbedder())
    scored = Recognizer(bundle_of(world), NoEmbedder())
    before = plain.decide(world["unknown"])
    after = scored.decide(world["unknown"])
    assert sum(r.recognized for r in before) > 0.8 * len(before)  # the everyday thresholds let them in
    assert sum(r.recognized for r in after) < 0.4 * len(after)
    assert any(r.open_set_vetoed and r.method == METHOD_NONE for r in after)
    known = scored.decide(world["queries"])
    right = [r.landmark_id == t for r, t in zip(known, world["truth"], strict=True)]
    assert np.mean(right) >= 0.9 and not any(r.recognized and not ok for r, ok in zip(known, right, strict=True))
    accepted = next(r for r in known if r.recognized)
    assert accepted.method == METHOD_VERIFIED and accepted.open_set_score > scored.open_set.threshold
    shown = scored.describe(accepted)["open_set"]
    assert list(shown["features"]) == list(FEATURES) and shown["vetoed"] is False
    assert shown["features"]["score"] == pytest.approx(accepted.score, abs=1e-3)  # the verification score
    assert shown["score"] == pytest.approx(accepted.open_set_score, abs=1e-3)  # the combined one
    assert shown["threshold"] == pytest.approx(scored.open_set.threshold, abs=1e-4)


def test_gps_matches_are_never_vetoed(world: dict) -> None:
    landmarks = [LandmarkInfo(i, f"l{i}", f"L{i}", lat=10.0 * i, lon=0.0) for i in range(1, KNOWN + 1)]
    bundle = replace(bundle_of(world), landmarks=tuple(landmarks))
    recognizer = Recognizer(bundle, NoEmbedder())
    [result] = recognizer.decide(world["unknown"][:1], [(10.0, 0.0)])
    assert result.method in (METHOD_GEO, METHOD_NONE) and not result.open_set_vetoed
    assert result.open_set_score is None


def test_a_bundle_keeps_its_score_and_an_old_bundle_decides_as_before(world: dict, tmp_path: Path) -> None:
    bundle = bundle_of(world)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "new"))
    assert loaded.open_set is not None
    assert loaded.open_set.threshold == pytest.approx(bundle.open_set.threshold)
    np.testing.assert_allclose(loaded.open_set.reference_density, bundle.open_set.reference_density)
    a = Recognizer(bundle, NoEmbedder()).decide(world["unknown"])
    b = Recognizer(loaded, NoEmbedder()).decide(world["unknown"])
    assert [r.landmark_id for r in a] == [r.landmark_id for r in b]

    old = load_bundle(save_bundle(replace(bundle, open_set=None), tmp_path / "old"))
    assert old.open_set is None
    plain = Recognizer(bundle_of(world, None), NoEmbedder()).decide(world["unknown"])
    assert [r.landmark_id for r in Recognizer(old, NoEmbedder()).decide(world["unknown"])] == [
        r.landmark_id for r in plain
    ]


def test_a_bundle_whose_score_files_are_missing_is_refused(world: dict, tmp_path: Path) -> None:
    folder = save_bundle(bundle_of(world), tmp_path / "b")
    (folder / f"{NEGATIVE_BANK}.npy").unlink()
    with pytest.raises(BundleIntegrityError, match="missing"):
        load_bundle(folder)


def test_features_of_a_photo_against_its_candidates() -> None:
    refs = LandmarkIndex(np.eye(4, dtype=np.float32)[[0, 1, 2, 3]], np.array([1, 1, 2, 2]))
    density = reference_density(refs, k=1)
    np.testing.assert_allclose(density, [0.0, 0.0, 0.0, 0.0])  # orthogonal siblings
    feats = OpenSetFeatures(refs, density, negatives=np.eye(4, dtype=np.float32)[[3]], k=1)
    q = l2_normalize(np.array([[1.0, 0.0, 0.5, 0.0]], dtype=np.float32))
    [f] = feats.compute(q, [1], [2])
    score, margin, density_score, density_margin, above_negatives = f
    assert score == pytest.approx(q[0, 0]) and margin == pytest.approx(q[0, 0] - q[0, 2])
    assert density_score == pytest.approx(score) and density_margin == pytest.approx(margin)
    assert above_negatives == pytest.approx(score)  # the negative bank is orthogonal to the photo
    [g] = feats.compute(q, [1], [None])
    assert g[1] == pytest.approx(score + 1.0)  # no runner-up: as unlike as a cosine gets


def test_a_lone_reference_gets_the_median_density() -> None:
    vectors = l2_normalize(np.array([[1, 0.1, 0], [1, 0.2, 0], [0, 0, 1]], dtype=np.float32))
    density = reference_density(LandmarkIndex(vectors, np.array([1, 1, 2])), k=3)
    assert density[0] == pytest.approx(float(vectors[0] @ vectors[1]))
    assert density[2] == pytest.approx(float(np.median(density[:2])))


def test_small_galleries_leave_one_landmark_out_and_large_ones_use_folds() -> None:
    few = landmark_folds(np.arange(1, 8))
    assert [f.tolist() for f in few] == [[i] for i in range(1, 8)]
    many = landmark_folds(np.arange(1, LEAVE_ONE_OUT_LANDMARKS + 12))
    assert len(many) == 5 and sorted(np.concatenate(many).tolist()) == list(range(1, LEAVE_ONE_OUT_LANDMARKS + 12))


def test_logistic_regression_separates_and_balances_classes() -> None:
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(1.0, 0.5, size=(200, 2)), rng.normal(-1.0, 0.5, size=(20, 2))]
    y = np.r_[np.ones(200), np.zeros(20)]
    w, b, mean, std = logistic_regression(x, y)
    logits = ((x - mean) / std) @ w + b
    assert np.mean((logits > 0) == (y > 0)) > 0.95
    assert np.mean(logits[y == 0] < 0) > 0.9  # the small class is not swamped


def test_stand_in_candidates_come_from_the_decisions_own_shortlist(world: dict) -> None:
    bundle = bundle_of(world, None)
    s = candidate_scores(
        world["unknown"],
        LandmarkIndex(bundle.centroids, bundle.centroid_landmarks),
        LandmarkIndex(bundle.references, bundle.reference_landmarks),
        DecisionParams(),
    )
    assert (s.runner_ids != s.best_ids).all() and (s.runner_ids > 0).all()


def test_whitening_pulls_a_landmarks_photos_together_and_travels_as_the_bundles_head(world: dict) -> None:
    from shared.model.head import project
    from shared.recognition.whitening import learn_whitening, whitening_head

    space = learn_whitening(world["gallery"], world["labels"], world["everyday"], dim=16)
    assert space.dim == 16
    np.testing.assert_allclose(project(whitening_head(space), world["gallery"]), space(world["gallery"]), atol=1e-5)

    def within_vs_between(x: np.ndarray) -> float:
        sims = x @ x.T
        same = world["labels"][:, None] == world["labels"][None, :]
        return float(sims[same & ~np.eye(len(x), dtype=bool)].mean() - sims[~same].mean())

    assert within_vs_between(space(world["gallery"])) > within_vs_between(world["gallery"])


def test_a_whitened_bundle_is_built_and_calibrated_in_spaces_learned_without_its_stand_ins(world: dict) -> None:
    from shared.model.head import project
    from shared.recognition.whitening import WhiteningOptions

    landmarks = [LandmarkInfo(i, f"l{i}", f"L{i}") for i in range(1, KNOWN + 1)]
    kwargs = dict(version="t", model={"backbone": "x"}, landmarks=landmarks, gallery=world["gallery"])
    kwargs |= dict(gallery_landmarks=world["labels"], non_landmarks=world["everyday"][:40])
    bundle = build_bundle_from_embeddings(**kwargs, unknown_rejection=0.9, whitening=WhiteningOptions(dim=24))
    assert bundle.head_state and bundle.embedding_dim == 24
    assert bundle.model["whitening"] == {"dim": 24, "shrink": 1.0} and bundle.model["embedding_dim"] == 24
    assert bundle.open_set is not None and bundle.open_set.metrics["cross_fitted_space"] is True
    assert bundle.open_set.negatives.shape[1] == 24
    recognizer = Recognizer(bundle, NoEmbedder())
    known = recognizer.decide(project(bundle.head_state, world["queries"]))
    assert np.mean([r.landmark_id == t for r, t in zip(known, world["truth"], strict=True)]) >= 0.8
    unknown = recognizer.decide(project(bundle.head_state, world["unknown"]))
    assert sum(r.recognized for r in unknown) < 0.4 * len(unknown)
    with pytest.raises(ValueError, match="one head"):
        build_bundle_from_embeddings(**kwargs, head_state={"fc.weight": 0}, whitening=WhiteningOptions(dim=24))


def test_stand_ins_the_rule_already_turns_away_count_toward_the_asked_share() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    everyone = np.ones(10, dtype=bool)
    assert threshold_after_rule(scores, everyone, 0.8) == pytest.approx(0.8, abs=1e-5)
    rule_took_four = np.array([False] * 4 + [True] * 6)  # the four lowest-scoring ones: half the work is done
    assert threshold_after_rule(scores, rule_took_four, 0.8) == pytest.approx(0.8, abs=1e-5)
    rule_took_top = np.array([True] * 6 + [False] * 4)  # four others: only four of the six passing must go
    assert threshold_after_rule(scores, rule_took_top, 0.8) == pytest.approx(0.4, abs=1e-5)
    all_but_one = np.array([False] * 9 + [True])  # the rule alone turns away 0.9: the score vetoes nobody
    t = threshold_after_rule(scores, all_but_one, 0.8)
    assert t < scores[-1]
    assert threshold_after_rule(scores, np.zeros(10, dtype=bool), 0.8) < scores.min()  # the rule took them all


def test_passes_rule_mirrors_the_decisions_gate_threshold_and_margin() -> None:
    cands = CandidateScores(
        best_ids=np.array([1, 2, 1, 1]),
        centroid=np.array([0.9, 0.9, 0.1, 0.9], dtype=np.float32),
        verification=np.array([0.8, 0.8, 0.8, 0.8], dtype=np.float32),
        second=np.array([0.5, 0.5, 0.5, 0.79], dtype=np.float32),
        landmark_ids=np.array([1, 2]),
        all_verification=np.zeros((4, 2), np.float32),
        runner_ids=np.array([2, 1, 2, 2]),
    )
    t = Thresholds(global_score=0.5, verification=0.7, geo=0.5, margin=0.05, per_landmark={2: 0.85})
    assert passes_rule(cands, t).tolist() == [True, False, False, False]  # ok, own threshold, gate, margin


def test_a_rule_aware_score_vetoes_fewer_known_photos_for_the_same_share_of_stand_ins(world: dict) -> None:
    bundle = bundle_of(world, None)
    centroids = LandmarkIndex(bundle.centroids, bundle.centroid_landmarks)
    references = LandmarkIndex(bundle.references, bundle.reference_landmarks)
    params = DecisionParams()

    def rule(negatives, c, r, gallery, gallery_landmarks):  # type: ignore[no-untyped-def]
        """The build's thresholds, with the first style's landmarks out of reach (look-alikes matched to them are
        turned away by the rule; random everyday photos alone never turn away a look-alike building)."""
        t = calibrate_thresholds(negatives, c, r, params, gallery=gallery, gallery_landmarks=gallery_landmarks)
        return replace(t, per_landmark={**t.per_landmark, **dict.fromkeys(range(1, KNOWN // STYLES + 1), 2.0)})

    args = (world["gallery"], world["labels"], centroids, references, world["everyday"][:40], params)
    blind = fit_open_set(*args, unknown_rejection=0.9)
    aware = fit_open_set(*args, unknown_rejection=0.9, rule=rule)
    assert blind is not None and aware is not None
    assert not blind.metrics["rule_aware"] and aware.metrics["rule_aware"]
    assert 0.0 < aware.metrics["stand_in_rule_rejection"] < 1.0
    assert aware.metrics["stand_in_landmark_rejection"] >= 0.9  # the rule's rejections and the score's together
    assert aware.threshold < blind.threshold
    assert aware.metrics["gallery_acceptance"] >= blind.metrics["gallery_acceptance"]


def test_each_left_out_landmark_counts_once_whatever_its_number_of_photos() -> None:
    many_easy = np.linspace(0.1, 0.8, 8)  # a landmark with many photos, unlike anything in the gallery
    few_hard = np.array([0.9, 1.0])  # one whose look-alike is in the gallery
    scores = np.r_[many_easy, few_hard]
    groups = np.r_[np.zeros(8), np.ones(2)]
    passed = np.ones(10, dtype=bool)
    assert threshold_after_rule(scores, passed, 0.75) == pytest.approx(0.8, abs=1e-5)  # per photo: all of one
    assert threshold_after_rule(scores, passed, 0.75, groups) == pytest.approx(0.9, abs=1e-5)  # 1.0 and 0.5
    twice = threshold_after_rule(np.r_[scores, many_easy], np.ones(18, dtype=bool), 0.75, np.r_[groups, np.zeros(8)])
    assert twice == pytest.approx(0.9, abs=1e-5)  # the easy landmark's photos counted twice: the same bar


def test_sample_weights_count_within_a_class_and_uniform_ones_change_nothing() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0], [3.1], [3.2]])
    y = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    plain = logistic_regression(x, y)
    uniform = logistic_regression(x, y, sample_weight=np.full(6, 3.0))
    assert np.allclose(plain[0], uniform[0]) and plain[1] == pytest.approx(uniform[1])
    heavy_far = logistic_regression(x, y, sample_weight=np.array([1.0, 1.0, 1.0, 1.0, 1.0, 20.0]))
    z = (np.array([3.0]) - plain[2]) / plain[3]
    assert (z @ heavy_far[0] + heavy_far[1]) > (z @ plain[0] + plain[1])  # the light negatives matter less
