"""The decision rule: global threshold, margin, verification, GPS radius, top-k and runner-up."""

from __future__ import annotations

import numpy as np
import pytest

from shared.index import LandmarkIndex, l2_normalize
from shared.recognition.decision import (
    METHOD_GEO,
    METHOD_NONE,
    METHOD_VERIFIED,
    DecisionParams,
    LandmarkGeo,
    Thresholds,
    decide,
)

DIM = 6
E = np.eye(DIM, dtype=np.float32)
COLOSSEUM = (41.8902, 12.4922)
TAJ = (27.1751, 78.0421)


def _q(*weights: float) -> np.ndarray:
    return l2_normalize(np.array([list(weights) + [0.0] * (DIM - len(weights))], dtype=np.float32))[0]


def _setup(references: np.ndarray | None = None, reference_ids: list[int] | None = None) -> dict:
    # landmark 1 along e0, landmark 2 along e1, landmark 3 along e2
    centroids = LandmarkIndex(E[:3], np.array([1, 2, 3]))
    refs = E[:3] if references is None else references
    ref_ids = [1, 2, 3] if reference_ids is None else reference_ids
    return {
        "centroids": centroids,
        "references": LandmarkIndex(refs, np.array(ref_ids)),
        "geo": LandmarkGeo(
            np.array([1, 2, 3]), np.array([COLOSSEUM[0], TAJ[0], np.nan]), np.array([COLOSSEUM[1], TAJ[1], np.nan])
        ),
        "model_version": "v-test",
    }


T = Thresholds(global_score=0.6, verification=0.5, geo=0.3, margin=0.1)


def test_clear_match_is_verified_and_names_the_runner_up() -> None:
    r = decide(_q(1.0, 0.3), None, thresholds=T, params=DecisionParams(), **_setup())
    assert r.landmark_id == 1 and r.method == METHOD_VERIFIED and r.model_version == "v-test"
    assert r.runner_up is not None and r.runner_up[0] == 2
    assert r.score == pytest.approx(_q(1.0, 0.3)[0])
    assert r.verification_score == pytest.approx(r.score)


def test_below_global_threshold_is_no_landmark() -> None:
    r = decide(_q(0.5, 0.4, 0.4, 0.6), None, thresholds=T, params=DecisionParams(), **_setup())
    assert r.landmark_id is None and r.method == METHOD_NONE and r.matches == ()


def test_verification_rejects_a_candidate_whose_references_disagree() -> None:
    # landmark 1's references point elsewhere (e3, e4): its centroid matches but its photos do not
    setup = _setup(references=np.stack([E[3], E[4], E[1], E[2]]), reference_ids=[1, 1, 2, 3])
    r = decide(_q(1.0, 0.2), None, thresholds=T, params=DecisionParams(), **setup)
    assert r.landmark_id is None and r.method == METHOD_NONE
    ok = decide(_q(1.0, 0.2), None, thresholds=T, params=DecisionParams(), **_setup())
    assert ok.landmark_id == 1


def test_small_margin_to_runner_up_is_rejected() -> None:
    r = decide(_q(1.0, 0.95), None, thresholds=T, params=DecisionParams(), **_setup())
    assert r.landmark_id is None
    assert r.runner_up is not None and r.runner_up[0] == 1  # the best rejected candidate


def test_top_k_returns_several_verified_landmarks_best_first() -> None:
    t = Thresholds(global_score=0.5, verification=0.5, geo=0.3, margin=0.0)
    r = decide(_q(1.0, 0.9, 0.1), None, thresholds=t, params=DecisionParams(top_k=3), **_setup())
    assert [m.landmark_id for m in r.matches] == [1, 2]
    assert r.matches[0].score > r.matches[1].score
    assert all(m.method == METHOD_VERIFIED for m in r.matches)
    single = decide(_q(1.0, 0.9, 0.1), None, thresholds=t, params=DecisionParams(top_k=1), **_setup())
    assert [m.landmark_id for m in single.matches] == [1]


def test_gps_limits_candidates_to_the_radius_with_the_lower_threshold() -> None:
    q = _q(0.4, 1.0)  # visually closest to landmark 2 (Taj Mahal), weakly like 1 (Colosseum)
    r = decide(q, COLOSSEUM, thresholds=T, params=DecisionParams(), **_setup())
    assert r.landmark_id == 1 and r.method == METHOD_GEO
    assert T.geo < r.score < T.global_score  # accepted only thanks to the lower geo threshold
    far = decide(q, (0.0, 0.0), thresholds=T, params=DecisionParams(), **_setup())
    assert far.landmark_id is None and far.method == METHOD_NONE


def test_gps_candidate_below_geo_threshold_is_no_landmark() -> None:
    r = decide(_q(0.1, 1.0), COLOSSEUM, thresholds=T, params=DecisionParams(), **_setup())
    assert r.landmark_id is None and r.method == METHOD_NONE


def test_radius_is_a_parameter() -> None:
    near_colosseum = (41.9009, 12.4833)  # ~1.4 km away
    q = _q(1.0)
    assert decide(q, near_colosseum, thresholds=T, params=DecisionParams(), **_setup()).landmark_id is None
    wide = decide(q, near_colosseum, thresholds=T, params=DecisionParams(geo_radius_km=2.0), **_setup())
    assert wide.landmark_id == 1


def test_per_landmark_verification_thresholds_override_the_global_one() -> None:
    q = _q(1.0, 0.3)  # landmark 1 at ~0.96
    strict = Thresholds(global_score=0.6, verification=0.5, geo=0.3, margin=0.1, per_landmark={1: 0.97})
    assert decide(q, None, thresholds=strict, params=DecisionParams(), **_setup()).landmark_id is None
    lenient = Thresholds(global_score=0.6, verification=0.99, geo=0.3, margin=0.1, per_landmark={1: 0.9})
    assert decide(q, None, thresholds=lenient, params=DecisionParams(), **_setup()).landmark_id == 1
    assert Thresholds.from_dict(strict.to_dict()) == strict
