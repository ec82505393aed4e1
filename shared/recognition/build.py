"""Centroids + references + calibration -> :class:`Bundle`; shared by the evaluator and `landmarks model build`.

References: when no hand-picked reference photos exist, each landmark's references are the ``n_references``
gallery photos closest to the landmark's mean embedding (its most typical views), so verification asks "does the
photo look like this landmark's typical views", a second opinion independent of the best centroid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.index import LandmarkIndex, build_centroids, l2_normalize
from shared.recognition.bundle import Bundle, LandmarkInfo
from shared.recognition.calibration import calibrate_threshold
from shared.recognition.decision import DecisionParams, Thresholds


@dataclass(frozen=True)
class CandidateScores:
    """Per photo: the best landmark by centroid score, its score, the runner-up's, and its verification score."""

    best_ids: np.ndarray
    best: np.ndarray
    second: np.ndarray
    verification: np.ndarray

    @property
    def margin(self) -> np.ndarray:
        return self.best - self.second


def candidate_scores(
    embeddings: np.ndarray, centroids: LandmarkIndex, references: LandmarkIndex, *, depth: int = 256
) -> CandidateScores:
    """The scores :func:`shared.recognition.decision.decide` tests without GPS, for many photos at once."""
    ranked = centroids.top_landmarks(embeddings, 2, depth=depth)
    best_ids = np.array([r[0][0] for r in ranked], dtype=np.int64)
    best = np.array([r[0][1] for r in ranked], dtype=np.float32)
    second = np.array([r[1][1] if len(r) > 1 else -np.inf for r in ranked], dtype=np.float32)
    ver = np.array(
        [references.mean_scores(e, [int(b)])[0] for e, b in zip(embeddings, best_ids, strict=True)],
        dtype=np.float32,
    )
    return CandidateScores(best_ids, best, second, ver)


def pick_references(embeddings: np.ndarray, landmark_ids: np.ndarray, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per landmark, the ``n`` gallery photos closest to its mean embedding."""
    x = l2_normalize(embeddings)
    ids = np.asarray(landmark_ids, dtype=np.int64)
    refs, owners = [], []
    for lid in np.unique(ids):
        g = x[ids == lid]
        mean = l2_normalize(g.mean(axis=0, keepdims=True))[0]
        keep = np.argsort(-(g @ mean), kind="stable")[:n]
        refs.append(g[keep])
        owners.append(np.full(len(keep), lid, dtype=np.int64))
    return np.concatenate(refs), np.concatenate(owners)


def calibrate_thresholds(
    non_landmarks: np.ndarray,
    centroids: LandmarkIndex,
    references: LandmarkIndex,
    *,
    rejection: float = 0.99,
    geo_rejection: float = 0.9,
    use_margin: bool = True,
) -> Thresholds:
    """Each score the decision tests gets the lowest threshold rejecting ``rejection`` of the non-landmarks.

    The geo threshold rejects only ``geo_rejection`` of them: a photo taken within the radius already carries
    strong evidence, so its visual bar is lower.
    """
    s = candidate_scores(l2_normalize(non_landmarks), centroids, references)
    return Thresholds(
        global_score=calibrate_threshold(s.best, rejection),
        verification=calibrate_threshold(s.verification, rejection),
        geo=calibrate_threshold(s.best, geo_rejection),
        margin=calibrate_threshold(s.margin, rejection) if use_margin else 0.0,
    )


def build_bundle_from_embeddings(
    *,
    version: str,
    model: dict[str, Any],
    landmarks: Sequence[LandmarkInfo],
    gallery: np.ndarray,
    gallery_landmarks: np.ndarray,
    non_landmarks: np.ndarray,
    references: np.ndarray | None = None,
    reference_landmarks: np.ndarray | None = None,
    n_references: int = 5,
    distance_threshold: float = 0.6,
    min_cluster_size: int | None = None,
    cluster_fraction: float = 0.1,
    rejection: float = 0.99,
    geo_rejection: float = 0.9,
    use_margin: bool = True,
    decision: DecisionParams | None = None,
    head_state: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Bundle:
    """Cluster the gallery into centroids, pick references, calibrate thresholds on non-landmarks."""
    gallery = l2_normalize(gallery)
    centroids, centroid_landmarks = build_centroids(
        gallery,
        gallery_landmarks,
        distance_threshold=distance_threshold,
        min_cluster_size=min_cluster_size,
        fraction=cluster_fraction,
    )
    if references is None or reference_landmarks is None or len(references) == 0:
        references, reference_landmarks = pick_references(gallery, gallery_landmarks, n_references)
    thresholds = calibrate_thresholds(
        non_landmarks,
        LandmarkIndex(centroids, centroid_landmarks),
        LandmarkIndex(references, reference_landmarks),
        rejection=rejection,
        geo_rejection=geo_rejection,
        use_margin=use_margin,
    )
    return Bundle(
        version=version,
        model=model,
        thresholds=thresholds,
        landmarks=tuple(landmarks),
        centroids=centroids,
        centroid_landmarks=centroid_landmarks,
        references=l2_normalize(references),
        reference_landmarks=np.asarray(reference_landmarks, dtype=np.int64),
        decision=decision or DecisionParams(),
        metrics=metrics or {},
        head_state=head_state,
    )
