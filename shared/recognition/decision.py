"""The decision: embedding (+ optional GPS) -> landmark or none, against centroids and reference photos.

With GPS, only landmarks within the radius are candidates and they face their own, lower threshold on the best
centroid score (location is strong evidence). Without GPS:

1. the Faiss centroid index shortlists the ``shortlist`` best landmarks; the best centroid score must pass the
   global threshold (a gate that drops most non-landmarks cheaply);
2. each shortlisted landmark is verified against its reference photos: the mean similarity to its
   ``verification_k`` most similar references (a kNN vote, sharper than one centroid for landmarks seen from many
   sides); the best verified landmark must pass the verification threshold;
3. it must also beat the runner-up's verification score by ``margin`` (look-alike landmarks are the main source of
   wrong-landmark answers);
4. when the model has a landmark-presence gate (a trained bundle's ``model["presence_gate"]``), its logit must be
   above the gate's calibrated threshold: the Kaggle teams' separate "is there a landmark at all?" model, which
   vetoes acceptances of everyday photos that happen to resemble a landmark. The GPS path is never vetoed
   (location is evidence the gate does not see). A vetoed photo gets the plain "none" result, marked
   ``gate_vetoed`` (not stored: the database knows only the method "none");
5. when the model has an open-set score (``Bundle.open_set``, calibrated on landmarks left out of the gallery),
   it must be above its threshold: the photo must look like the landmark it matched rather than like a landmark
   the gallery does not know (:mod:`shared.recognition.open_set`). Again never on the GPS path; a vetoed photo
   is marked ``open_set_vetoed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from shared.index import LandmarkIndex
from shared.recognition.geo import within_radius

METHOD_GEO = "geo"
METHOD_VERIFIED = "global+verified"
METHOD_NONE = "none"


@dataclass(frozen=True)
class Thresholds:
    """Calibrated on known non-landmark photos; stored with the model.

    ``per_landmark`` holds each landmark's own verification threshold (landmark id -> threshold); landmarks not
    in it use ``verification``.
    """

    global_score: float
    verification: float
    geo: float
    margin: float = 0.0
    per_landmark: dict[int, float] = field(default_factory=dict)

    def verification_for(self, landmark_id: int) -> float:
        return self.per_landmark.get(landmark_id, self.verification)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: float(getattr(self, k)) for k in ("global_score", "verification", "geo", "margin")}
        out["per_landmark"] = {str(k): float(v) for k, v in sorted(self.per_landmark.items())}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        scalars = {k: float(data[k]) for k in ("global_score", "verification", "geo", "margin") if k in data}
        per = {int(k): float(v) for k, v in (data.get("per_landmark") or {}).items()}
        return cls(**scalars, per_landmark=per)


@dataclass(frozen=True)
class DecisionParams:
    geo_radius_km: float = 1.0
    top_k: int = 1
    shortlist: int = 10  # landmarks (by centroid score) that go on to verification
    verification_k: int = 3  # references voting in a landmark's verification score
    search_depth: int = 256  # centroids fetched from Faiss before reducing to landmarks


@dataclass(frozen=True)
class Match:
    landmark_id: int
    score: float
    method: str
    verification_score: float | None = None


@dataclass(frozen=True)
class RecognitionResult:
    """One photo's decision: the best match (or none), the runner-up, and all accepted matches (<= top_k).

    ``score`` is the score the decision tested last: the verification score without GPS, the centroid score with
    GPS. When nothing matched, ``score``/``runner_up`` describe the best rejected candidate (for explanations).
    """

    landmark_id: int | None
    score: float
    method: str
    model_version: str
    runner_up: tuple[int, float] | None = None
    verification_score: float | None = None
    matches: tuple[Match, ...] = field(default_factory=tuple)
    gate_logit: float | None = None  # the presence gate's log-odds, when the model has a gate
    gate_vetoed: bool = False  # the rule accepted a landmark but the presence gate said "no landmark"
    open_set_score: float | None = None  # the open-set score of an acceptance, when the model has one
    open_set_features: dict[str, float] | None = None  # what that score was made of
    open_set_vetoed: bool = False  # the rule accepted a landmark but it looked like one the gallery does not know
    second: tuple[int, float] | None = None  # turned away: the runner-up behind the best rejected candidate

    @property
    def recognized(self) -> bool:
        return self.landmark_id is not None


@dataclass(frozen=True, eq=False)
class PresenceGate:
    """Landmark-presence gate: logistic regression on the embedding ("does the photo show a landmark at all?").

    Trained by :func:`shared.training.gate.train_gate`; stored in a bundle's ``model["presence_gate"]`` with the
    threshold calibrated on out-of-fold non-landmark scores. Scoring is a dot product: no torch needed.
    """

    weight: np.ndarray  # D float32
    bias: float
    threshold: float | None = None  # a photo passes when its logit is strictly above; None: not calibrated yet

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Log-odds that each row (an L2-normalised embedding) shows a landmark."""
        return (np.asarray(embeddings, dtype=np.float32) @ self.weight + self.bias).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"weight": [float(w) for w in self.weight], "bias": float(self.bias)}
        if self.threshold is not None:
            out["threshold"] = float(self.threshold)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PresenceGate:
        threshold = data.get("threshold")
        return cls(
            np.asarray(data["weight"], dtype=np.float32),
            float(data["bias"]),
            None if threshold is None else float(threshold),
        )


def apply_gate(result: RecognitionResult, gate_logit: float, threshold: float) -> RecognitionResult:
    """Step 4 of the rule: a non-GPS acceptance whose gate logit is not above ``threshold`` becomes "none"."""
    logit = float(gate_logit)
    if result.method == METHOD_GEO or not result.recognized or logit > threshold:
        return replace(result, gate_logit=logit)
    return turned_away(result, gate_logit=logit, gate_vetoed=True)


def apply_open_set(
    result: RecognitionResult, score: float, threshold: float, features: dict[str, float]
) -> RecognitionResult:
    """Step 5 of the rule: a non-GPS acceptance whose open-set score is not above ``threshold`` becomes "none"
    (the photo looks like a landmark the gallery does not know, :mod:`shared.recognition.open_set`)."""
    value = float(score)
    if result.method == METHOD_GEO:
        return result
    if not result.recognized or value > threshold:  # a turned-away photo keeps its score for explanations
        return replace(result, open_set_score=value, open_set_features=features)
    return turned_away(result, open_set_score=value, open_set_features=features, open_set_vetoed=True)


def turned_away(result: RecognitionResult, **why: Any) -> RecognitionResult:
    """An acceptance vetoed by a later step: "none", describing the candidate it turned down (``runner_up`` and
    ``score``) and the one behind it (``second``), as every "none" does; ``why`` marks the step and its value."""
    assert result.landmark_id is not None
    return replace(
        result,
        landmark_id=None,
        method=METHOD_NONE,
        runner_up=(result.landmark_id, result.score),
        second=result.runner_up,
        verification_score=None,
        matches=(),
        **why,
    )


@dataclass(frozen=True)
class LandmarkGeo:
    """Landmark ids with coordinates aligned (NaN where unknown)."""

    ids: np.ndarray
    lats: np.ndarray
    lons: np.ndarray


def decide(
    embedding: np.ndarray,
    gps: tuple[float, float] | None,
    *,
    centroids: LandmarkIndex,
    references: LandmarkIndex,
    geo: LandmarkGeo,
    thresholds: Thresholds,
    params: DecisionParams,
    model_version: str,
) -> RecognitionResult:
    """Decide for one L2-normalised embedding; see the module docstring for the rule."""
    if gps is not None:
        return _decide_geo(embedding, gps, centroids, geo, thresholds, params, model_version)
    shortlist = centroids.top_landmarks(
        embedding[None, :], max(params.shortlist, params.top_k, 2), depth=params.search_depth
    )[0]
    if not shortlist:
        return RecognitionResult(None, float("-inf"), METHOD_NONE, model_version)
    ids = [lid for lid, _ in shortlist]
    ver = references.mean_scores(embedding, ids, k=params.verification_k)
    order = np.argsort(-ver, kind="stable")
    ranked = [(ids[i], float(ver[i])) for i in order]
    best_id, best = ranked[0]
    runner_up = ranked[1] if len(ranked) > 1 else None
    second = runner_up[1] if runner_up else float("-inf")
    gate = shortlist[0][1] > thresholds.global_score
    if not (gate and best > thresholds.verification_for(best_id) and best - second > thresholds.margin):
        return RecognitionResult(None, best, METHOD_NONE, model_version, runner_up=(best_id, best), second=runner_up)
    centroid_score = dict(shortlist)
    matches = [Match(best_id, best, METHOD_VERIFIED, best)] + [
        Match(lid, v, METHOD_VERIFIED, v)
        for lid, v in ranked[1 : params.top_k]
        if v > thresholds.verification_for(lid) and centroid_score[lid] > thresholds.global_score
    ]
    return RecognitionResult(
        best_id,
        best,
        METHOD_VERIFIED,
        model_version,
        runner_up=runner_up,
        verification_score=best,
        matches=tuple(matches),
    )


def _decide_geo(
    embedding: np.ndarray,
    gps: tuple[float, float],
    centroids: LandmarkIndex,
    geo: LandmarkGeo,
    thresholds: Thresholds,
    params: DecisionParams,
    model_version: str,
) -> RecognitionResult:
    near = geo.ids[within_radius(gps, geo.lats, geo.lons, params.geo_radius_km)]
    if len(near) == 0:
        return RecognitionResult(None, float("-inf"), METHOD_NONE, model_version)
    scores = centroids.landmark_scores(embedding, near.tolist())
    order = np.argsort(-scores)
    ranked = [(int(near[i]), float(scores[i])) for i in order]
    runner_up = ranked[1] if len(ranked) > 1 else None
    matches = tuple(Match(lid, s, METHOD_GEO) for lid, s in ranked[: params.top_k] if s > thresholds.geo)
    if not matches:
        return RecognitionResult(None, ranked[0][1], METHOD_NONE, model_version, runner_up=ranked[0])
    return RecognitionResult(
        matches[0].landmark_id, matches[0].score, METHOD_GEO, model_version, runner_up=runner_up, matches=matches
    )
