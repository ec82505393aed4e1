"""Thresholds for the scene prior: the model's thresholds recalibrated on the penalised scores of the known
non-landmarks, so the same share of them is rejected with the prior as without it (the prior then buys recall on
landmark-like photos instead of only rejecting more)."""

from __future__ import annotations

import dataclasses

import numpy as np

from shared.index import LandmarkIndex
from shared.recognition.build import candidate_scores
from shared.recognition.bundle import Bundle
from shared.recognition.calibration import calibrate_threshold
from shared.recognition.decision import Thresholds
from shared.scenes.tagger import LANDMARK_LABELS, ScenePrior


def prior_thresholds(
    bundle: Bundle,
    non_landmarks: np.ndarray,
    masses: np.ndarray,
    prior: ScenePrior,
    *,
    rejection: float = 0.99,
    landmark_rejection: float = 1.0,
    geo_rejection: float = 0.9,
) -> Thresholds:
    """Verification, per-landmark and geo thresholds on ``score - penalty(mass)`` of the non-landmarks; the
    centroid gate and the margin (a difference of two scores of one photo: the penalty cancels) are kept."""
    s = candidate_scores(
        non_landmarks,
        LandmarkIndex(bundle.centroids, bundle.centroid_landmarks),
        LandmarkIndex(bundle.references, bundle.reference_landmarks),
        bundle.decision,
    )
    pen = prior.penalty(masses)  # float64, as the decision adds it to the thresholds
    per_landmark: dict[int, float] = {}
    if bundle.thresholds.per_landmark:
        for j, lid in enumerate(s.landmark_ids):
            col = s.all_verification[:, j]
            if np.isfinite(col).any():
                per_landmark[int(lid)] = calibrate_threshold(col.astype(np.float64) - pen, landmark_rejection)
    return dataclasses.replace(
        bundle.thresholds,
        verification=calibrate_threshold(s.verification.astype(np.float64) - pen, rejection),
        geo=calibrate_threshold(s.centroid.astype(np.float64) - pen, geo_rejection),
        per_landmark=per_landmark,
    )


def with_scene_prior(
    bundle: Bundle,
    non_landmarks: np.ndarray,
    masses: np.ndarray,
    weight: float,
    *,
    labels: tuple[str, ...] = LANDMARK_LABELS,
    saturation: float = 1.0,
    rejection: float = 0.99,
    landmark_rejection: float = 1.0,
    geo_rejection: float = 0.9,
    mapping_digest: str | None = None,
) -> Bundle:
    """The bundle with a scene prior of ``weight`` and its own calibrated thresholds (``weight`` 0: no prior)."""
    prior = ScenePrior(weight=weight, labels=labels, saturation=saturation)
    if weight > 0:
        t = prior_thresholds(
            bundle,
            non_landmarks,
            masses,
            prior,
            rejection=rejection,
            landmark_rejection=landmark_rejection,
            geo_rejection=geo_rejection,
        )
        prior = dataclasses.replace(prior, thresholds=t.to_dict())
    scenes = dataclasses.replace(bundle.scenes, prior=prior, mapping_digest=mapping_digest)
    return dataclasses.replace(bundle, scenes=scenes)
