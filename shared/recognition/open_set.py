"""The open-set score: does a photo show the landmark it matched, or a landmark the gallery does not know?

The thresholds of :mod:`shared.recognition.build` are calibrated on everyday non-landmark photos, which look
nothing like a church or a castle the operator never imported; such photos matched a known look-alike well above
those thresholds. This score is calibrated on **unknown-landmark stand-ins made from the gallery itself**: each
landmark's gallery photos are decided against a gallery without that landmark (leave-landmarks-out, in folds
when there are many landmarks), which is exactly what an unknown landmark meets. A small logistic regression
(Mail.ru's and the Kaggle winners' cues, all cheap at decision time) separates them from the gallery's own photos
decided leave-one-out, and its threshold turns away ``unknown_rejection`` of the stand-ins.

Features of a photo's best candidate (the landmark the decision would pick) and its runner-up:

- ``score``: the verification score, the mean similarity to the candidate's ``k`` most similar references;
- ``margin``: the score minus the runner-up's;
- ``density_score``: the same mean, each reference's similarity less how similar that reference is to its own
  ``k`` nearest sibling references (a reference in a tight cluster of near-duplicate views asks for more);
- ``density_margin``: the density score minus the runner-up's;
- ``above_negatives``: the score minus the mean similarity to the ``k`` closest known non-landmark photos (the
  GLR 2020 winners' penalty for looking like a non-landmark).

Everything is numpy: the decision needs no torch. ``landmarks recognize --json`` shows each feature, the score
and the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import minimize

from shared.index import LandmarkIndex
from shared.recognition.calibration import SCORE_TOLERANCE, calibrate_threshold

if TYPE_CHECKING:
    from shared.recognition.build import CandidateScores
    from shared.recognition.decision import Thresholds

FEATURES = ("score", "margin", "density_score", "density_margin", "above_negatives")
NEGATIVE_BANK_MAX = 2000  # known non-landmarks kept for ``above_negatives`` (a few MB; < 1 ms per photo)
LEAVE_ONE_OUT_LANDMARKS = 20  # up to this many landmarks, stand-ins leave one landmark out at a time; else folds
STAND_IN_FOLDS = 5
NO_RUNNER_UP = -1.0  # a gallery of one landmark: the runner-up is as unlike as a cosine gets
SELF_MATCH = 1.0 - 1e-5  # a reference this similar to the query is the query itself (leave-one-out)


@dataclass(frozen=True, eq=False)
class OpenSetModel:
    """What a bundle carries to score unknown landmarks: the combiner, its threshold, each reference's density
    and a bank of known non-landmark embeddings. A photo passes when its score is strictly above ``threshold``."""

    weights: np.ndarray  # len(FEATURES), on standardised features
    bias: float
    mean: np.ndarray
    std: np.ndarray
    threshold: float
    k: int
    reference_density: np.ndarray  # R float32, aligned with the bundle's references
    negatives: np.ndarray  # M x D float32
    metrics: dict[str, Any] = field(default_factory=dict)

    def score(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return (z @ self.weights + self.bias).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        """The JSON part (arrays of references' length live in files of the bundle)."""
        return {
            "features": list(FEATURES),
            "weights": [float(w) for w in self.weights],
            "bias": float(self.bias),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "threshold": float(self.threshold),
            "k": int(self.k),
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], reference_density: np.ndarray, negatives: np.ndarray) -> OpenSetModel:
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError(f"open-set features {data.get('features')} are not this version's {list(FEATURES)}")
        return cls(
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=float(data["bias"]),
            mean=np.asarray(data["mean"], dtype=np.float64),
            std=np.asarray(data["std"], dtype=np.float64),
            threshold=float(data["threshold"]),
            k=int(data["k"]),
            reference_density=np.asarray(reference_density, dtype=np.float32),
            negatives=np.asarray(negatives, dtype=np.float32),
            metrics=dict(data.get("metrics") or {}),
        )


class OpenSetFeatures:
    """Computes :data:`FEATURES` for photos and their (best, runner-up) candidates against one set of references."""

    def __init__(self, references: LandmarkIndex, density: np.ndarray, negatives: np.ndarray, k: int) -> None:
        self.vectors = references.vectors
        self.density = np.asarray(density, dtype=np.float32)
        self.negatives = np.asarray(negatives, dtype=np.float32)
        self.k = max(1, k)
        self.rows: dict[int, np.ndarray] = {}
        for lid in np.unique(references.labels):
            self.rows[int(lid)] = np.flatnonzero(references.labels == lid)

    def compute(
        self,
        embeddings: np.ndarray,
        best: Sequence[int] | np.ndarray,
        runner_up: Sequence[int | None],
        *,
        leave_one_out: bool = False,
    ) -> np.ndarray:
        """N x len(FEATURES). ``leave_one_out``: ignore references identical to the photo (gallery photos)."""
        x = np.asarray(embeddings, dtype=np.float32)
        sims = x @ self.vectors.T
        if leave_one_out:
            sims[sims >= SELF_MATCH] = -np.inf
        neg = x @ self.negatives.T if len(self.negatives) else np.zeros((len(x), 1), np.float32)
        kn = min(self.k, neg.shape[1])
        near_negatives = np.partition(neg, neg.shape[1] - kn, axis=1)[:, -kn:].mean(axis=1)
        out = np.zeros((len(x), len(FEATURES)), dtype=np.float64)
        for i, (b, r) in enumerate(zip(best, runner_up, strict=True)):
            v1, d1 = self._vote(sims[i], int(b))
            v2, d2 = self._vote(sims[i], int(r)) if r is not None else (NO_RUNNER_UP, NO_RUNNER_UP - 1.0)
            out[i] = (v1, v1 - v2, d1, d1 - d2, v1 - near_negatives[i])
        return out

    def _vote(self, sims: np.ndarray, landmark: int) -> tuple[float, float]:
        """The landmark's verification score (mean of its ``k`` most similar references) and its density score."""
        rows = self.rows.get(landmark, np.zeros(0, np.int64))
        rows = rows[np.isfinite(sims[rows])]
        if not len(rows):
            return NO_RUNNER_UP, NO_RUNNER_UP - 1.0
        s = sims[rows]
        k = min(self.k, len(rows))
        top = np.argpartition(-s, k - 1)[:k]
        return float(s[top].mean()), float((s[top] - self.density[rows[top]]).mean())


def reference_density(references: LandmarkIndex, k: int) -> np.ndarray:
    """Per reference: the mean similarity to its ``k`` most similar references of the same landmark (itself
    excluded); a landmark's only reference gets the median of the others (it has no siblings to measure)."""
    out = np.full(len(references), np.nan, dtype=np.float32)
    for lid in np.unique(references.labels):
        rows = np.flatnonzero(references.labels == lid)
        if len(rows) < 2:
            continue
        v = references.vectors[rows]
        s = v @ v.T
        np.fill_diagonal(s, -np.inf)
        kk = min(k, len(rows) - 1)
        out[rows] = np.sort(s, axis=1)[:, -kk:].mean(axis=1)
    fill = float(np.nanmedian(out)) if np.isfinite(out).any() else 1.0
    return np.where(np.isfinite(out), out, fill).astype(np.float32)


def negative_bank(non_landmarks: np.ndarray, limit: int = NEGATIVE_BANK_MAX, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` known non-landmark embeddings (an even random sample when there are more)."""
    x = np.asarray(non_landmarks, dtype=np.float32)
    if len(x) <= limit:
        return x.copy()
    keep = np.sort(np.random.default_rng(seed).choice(len(x), size=limit, replace=False))
    return x[keep]


def runner_ups(runner_ids: np.ndarray) -> list[int | None]:
    """Runner-up ids of :class:`shared.recognition.build.CandidateScores` (-1: none) as optional ints."""
    return [int(r) if r >= 0 else None for r in np.asarray(runner_ids)]


Transform = Callable[[np.ndarray], np.ndarray]
# Learns the embedding space from the gallery rows a mask keeps (e.g. the whitening) and returns the map from raw
# embeddings into it; stand-ins and known photos are then scored in a space learned without them.
Learner = Callable[[np.ndarray], Transform]
# The decision's own thresholds (everyday photos, margin) for a gallery: (everyday non-landmarks, centroids,
# references, gallery photos, their landmarks) -> Thresholds, as the bundle's are calibrated.
Rule = Callable[[np.ndarray, LandmarkIndex, LandmarkIndex, np.ndarray, np.ndarray], "Thresholds"]


@dataclass(frozen=True)
class _Space:
    """Gallery, centroids, references and negatives mapped into one learned space."""

    gallery: np.ndarray
    centroids: LandmarkIndex
    references: LandmarkIndex
    negatives: np.ndarray
    transform: Transform

    @classmethod
    def of(
        cls,
        transform: Transform,
        gallery: np.ndarray,
        centroids: LandmarkIndex,
        references: LandmarkIndex,
        negatives: np.ndarray,
    ) -> _Space:
        return cls(
            transform(gallery),
            LandmarkIndex(transform(centroids.vectors), centroids.labels),
            LandmarkIndex(transform(references.vectors), references.labels),
            transform(negatives),
            transform,
        )

    def without(self, landmarks: np.ndarray) -> tuple[LandmarkIndex, LandmarkIndex] | None:
        keep_c = ~np.isin(self.centroids.labels, landmarks)
        keep_r = ~np.isin(self.references.labels, landmarks)
        if not keep_c.any() or not keep_r.any():
            return None
        return (
            LandmarkIndex(self.centroids.vectors[keep_c], self.centroids.labels[keep_c]),
            LandmarkIndex(self.references.vectors[keep_r], self.references.labels[keep_r]),
        )


def fit_open_set(
    gallery: np.ndarray,
    gallery_landmarks: np.ndarray,
    centroids: LandmarkIndex,
    references: LandmarkIndex,
    non_landmarks: np.ndarray,
    params: Any,
    *,
    unknown_rejection: float,
    learn: Learner | None = None,
    unknown_landmarks: np.ndarray | None = None,
    rule: Rule | None = None,
    balanced: bool = True,
) -> OpenSetModel | None:
    """Fit the combiner on the gallery decided leave-one-out (photos matched to their own landmark) against
    unknown-landmark stand-ins (each landmark's photos decided without that landmark), and set its threshold to
    turn away ``unknown_rejection`` of the stand-ins. None for a gallery of fewer than two landmarks.

    ``learn``: the embeddings are raw and the bundle's space is learned from the gallery (the whitening). Each
    stand-in fold and each fold of known photos is then scored in a space learned without those photos, as a
    photo the model never saw is: a space learned with them would make them look more known than they are.

    ``unknown_landmarks``: real photos of landmarks the gallery does not know (the operator's, raw when
    ``learn`` is given): stand-ins of their own, decided against the whole gallery, and every one of them is
    turned away (the threshold is at least their highest score), as each landmark's own threshold turns away every
    known everyday photo.

    ``rule``: the decision's own thresholds for a gallery. With it, each stand-in first meets the rule against
    its gallery without its landmark (thresholds calibrated on that gallery, as a bundle built without the
    landmark would have them): a stand-in the rule already turns away counts as turned away, and the threshold
    only has to turn away the rest of ``unknown_rejection`` among those the rule accepts. That is what an
    unknown photo meets (the score only vetoes acceptances); without it, the rule's own rejections come on top
    of the share asked and the model turns away more unknown landmarks, and known ones, than asked.

    ``balanced``: the share turned away is counted per left-out landmark and averaged (each stand-in landmark is
    one unknown landmark; :func:`threshold_after_rule`), not over photos, and the combiner weighs each left-out
    landmark's stand-ins alike.
    """
    from shared.recognition.build import candidate_scores  # build imports this module

    gl = np.asarray(gallery_landmarks, dtype=np.int64)
    landmarks = np.unique(gl)
    if len(landmarks) < 2 or not 0.0 < unknown_rejection < 1.0:
        return None
    k = params.verification_k
    bank = negative_bank(non_landmarks)
    raw = (gallery, centroids, references, bank)

    def space(keep: np.ndarray | None) -> _Space:
        return _Space.of(_identity if learn is None else learn(_all(len(gl)) if keep is None else keep), *raw)

    def features(
        s: _Space,
        refs: LandmarkIndex,
        photos: np.ndarray,
        best: np.ndarray,
        runner: list[int | None],
        *,
        loo: bool = False,
    ) -> np.ndarray:
        scorer = OpenSetFeatures(refs, reference_density(refs, k), s.negatives, k)
        return scorer.compute(photos, best, runner, leave_one_out=loo)

    final = space(None)
    positives = []
    for rows in _photo_folds(len(gl)) if learn is not None else [np.arange(len(gl))]:
        s = final if learn is None else space(~np.isin(np.arange(len(gl)), rows))
        known = candidate_scores(s.gallery[rows], s.centroids, s.references, params, leave_one_out=True)
        right = known.best_ids == gl[rows]
        if right.any():
            photos = s.gallery[rows][right]
            positives.append(
                features(s, s.references, photos, known.best_ids[right], runner_ups(known.runner_ids[right]), loo=True)
            )
    stand_ins: list[np.ndarray] = []
    rule_passed: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    for fold in landmark_folds(landmarks):
        out = np.isin(gl, fold)
        s = final if learn is None else space(~out)
        rest = s.without(fold)
        if rest is None:
            continue
        cands = candidate_scores(s.gallery[out], *rest, params)
        stand_ins.append(features(s, rest[1], s.gallery[out], cands.best_ids, runner_ups(cands.runner_ids)))
        groups.append(gl[out])
        if rule is not None:
            keep = ~out
            rule_passed.append(passes_rule(cands, rule(s.negatives, *rest, s.gallery[keep], gl[keep])))
        else:
            rule_passed.append(np.ones(int(out.sum()), dtype=bool))
    operator = np.zeros((0, len(FEATURES)))
    if unknown_landmarks is not None and len(unknown_landmarks):
        extra = final.transform(unknown_landmarks)
        cands = candidate_scores(extra, final.centroids, final.references, params)
        operator = features(final, final.references, extra, cands.best_ids, runner_ups(cands.runner_ids))
        stand_ins.append(operator)
        rule_passed.append(np.ones(len(operator), dtype=bool))  # all turned away below, whatever the rule does
        groups.append(np.full(len(operator), -1, dtype=np.int64))  # one more unknown landmark, in effect
    if not stand_ins or not positives:
        return None
    known_x, unknown = np.concatenate(positives), np.concatenate(stand_ins)
    passed = np.concatenate(rule_passed)
    group = np.concatenate(groups)
    labels = np.r_[np.ones(len(known_x)), np.zeros(len(unknown))]
    index = np.unique(group, return_inverse=True)[1]
    per_landmark = 1.0 / np.bincount(index)[index] if balanced else np.ones(len(unknown))
    sample = np.r_[np.ones(len(known_x)), per_landmark]
    weights, bias, mean, std = logistic_regression(np.concatenate([known_x, unknown]), labels, sample_weight=sample)
    density = reference_density(final.references, k)
    model = OpenSetModel(weights, bias, mean, std, 0.0, k, density, final.negatives.astype(np.float32))
    unknown_scores, known_scores = model.score(unknown), model.score(known_x)
    threshold = threshold_after_rule(unknown_scores, passed, unknown_rejection, group if balanced else None)
    if len(operator):  # the operator's own unknown landmarks are all turned away, as every everyday photo is
        threshold = max(threshold, calibrate_threshold(model.score(operator), 1.0))
    turned_away = ~passed | (unknown_scores <= threshold)
    metrics = {
        "unknown_rejection": unknown_rejection,
        "stand_ins": int(len(unknown)),
        "stand_in_rejection": float(np.mean(turned_away)),
        "stand_in_rule_rejection": float(np.mean(~passed)),
        "stand_in_landmark_rejection": float(np.mean(np.bincount(index, weights=turned_away) / np.bincount(index))),
        "balanced": balanced,
        "gallery_photos": int(len(known_x)),
        "gallery_acceptance": float(np.mean(known_scores > threshold)),
        "folds": len(landmark_folds(landmarks)),
        "cross_fitted_space": learn is not None,
        "operator_unknown_landmarks": 0 if unknown_landmarks is None else int(len(unknown_landmarks)),
        "rule_aware": rule is not None,
    }
    return replace(model, threshold=threshold, metrics=metrics)


def passes_rule(cands: CandidateScores, thresholds: Thresholds) -> np.ndarray:
    """Which photos the decision's rule (steps 1-3 of :mod:`shared.recognition.decision`) accepts."""
    verification = np.array([thresholds.verification_for(int(b)) for b in cands.best_ids], dtype=np.float64)
    return (
        (cands.centroid > thresholds.global_score)
        & (cands.verification > verification)
        & (cands.margin > thresholds.margin)
    )


def threshold_after_rule(
    scores: np.ndarray, passed: np.ndarray, rejection: float, groups: np.ndarray | None = None
) -> float:
    """The lowest threshold that, with the photos the rule already turned away (``~passed``), turns away at
    least ``rejection`` of them; below every score when the rule alone does.

    ``groups``: each photo's left-out landmark. The share is then the mean over landmarks of each one's share
    turned away, every left-out landmark counting as one unknown landmark whatever its number of photos (else a
    landmark with many photos and a look-alike in the gallery sets the bar for all unknown landmarks)."""
    s = np.asarray(scores, dtype=np.float64)
    ok = np.asarray(passed, dtype=bool)
    if not ok.any():  # the rule turns every one away: the score needs to veto nothing
        return float(s.min()) - 1.0 if len(s) else 0.0
    g = np.zeros(len(s), dtype=np.int64) if groups is None else np.unique(groups, return_inverse=True)[1]
    sizes = np.bincount(g)
    weight = 1.0 / (len(sizes) * sizes[g])
    turned_away = float(weight[~ok].sum())
    order = np.argsort(s[ok], kind="stable")
    cumulative = turned_away + np.cumsum(weight[ok][order])
    if turned_away >= rejection - 1e-9:
        return float(s[ok].min()) - 1.0
    at = min(int(np.searchsorted(cumulative, rejection - 1e-9)), len(order) - 1)
    return float(s[ok][order][at]) + SCORE_TOLERANCE


def _identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _all(n: int) -> np.ndarray:
    return np.ones(n, dtype=bool)


def _photo_folds(n: int, folds: int = STAND_IN_FOLDS, seed: int = 0) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[i::folds]) for i in range(folds)]


def landmark_folds(landmarks: np.ndarray, folds: int = STAND_IN_FOLDS, seed: int = 0) -> list[np.ndarray]:
    """Groups of landmarks left out together: one at a time for a small gallery, else ``folds`` seeded groups."""
    ids = np.asarray(landmarks, dtype=np.int64)
    if len(ids) <= LEAVE_ONE_OUT_LANDMARKS:
        return [ids[i : i + 1] for i in range(len(ids))]
    order = np.random.default_rng(seed).permutation(ids)
    return [order[i::folds] for i in range(folds)]


def logistic_regression(
    x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Class-balanced, L2-regularised logistic regression on standardised features (L-BFGS): weights, bias and
    the standardisation's mean and std. ``sample_weight``: relative weights within each class (each class still
    weighs half)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    z = (x - mean) / std
    pos = max(1e-12, float(sw[y > 0].sum())) if (y > 0).any() else 1.0
    neg = max(1e-12, float(sw[y <= 0].sum())) if (y <= 0).any() else 1.0
    w_sample = np.where(y > 0, len(y) * sw / (2 * pos), len(y) * sw / (2 * neg))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logits = z @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-logits))
        value = float(np.mean(w_sample * (np.logaddexp(0.0, logits) - y * logits)) + l2 * theta[:-1] @ theta[:-1])
        g = w_sample * (p - y) / len(y)
        return value, np.r_[z.T @ g + 2 * l2 * theta[:-1], g.sum()]

    theta = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B").x
    return theta[:-1], float(theta[-1]), mean, std
