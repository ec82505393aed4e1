"""Thresholds from known non-landmark photos: reject a target share of them.

A photo is accepted when its score is strictly above the threshold, so the threshold is the lowest value at or
under which at least ``rejection`` of the non-landmark scores fall: the ceil(rejection * n)-th smallest score,
raised by ``SCORE_TOLERANCE``.
"""

from __future__ import annotations

import math

import numpy as np

# The same photo scored again (Faiss in float32 at decision time, numpy at calibration time, another batch size in
# the network) moves by ~1e-7; without this slack a calibration photo can come back just above its own threshold.
SCORE_TOLERANCE = 1e-6


def calibrate_threshold(non_landmark_scores: np.ndarray, rejection: float = 0.99) -> float:
    """Lowest threshold that rejects (score <= threshold) at least ``rejection`` of the given scores, even when
    they are recomputed with float32 noise."""
    s = np.sort(np.asarray(non_landmark_scores, dtype=np.float64).ravel())
    s = s[np.isfinite(s)]
    if not 0.0 < rejection <= 1.0:
        raise ValueError(f"rejection must be in (0, 1], got {rejection}")
    if len(s) == 0:
        raise ValueError("no non-landmark scores to calibrate on")
    k = max(1, math.ceil(rejection * len(s) - 1e-9))
    return float(s[k - 1]) + SCORE_TOLERANCE


def wrong_answer_margin(margins: np.ndarray, share: float) -> float:
    """The best-vs-runner-up margin that turns away ``share`` of the given wrong answers (their margins; 0 when
    there are none): one rule for the untrained decision (leave-one-out answers) and trained models (held-out)."""
    m = np.asarray(margins, dtype=np.float64)
    m = m[np.isfinite(m)]
    return max(0.0, float(np.quantile(m, share))) if len(m) else 0.0


def rejected_share(non_landmark_scores: np.ndarray, threshold: float) -> float:
    """Share of scores the threshold rejects (score <= threshold)."""
    s = np.asarray(non_landmark_scores, dtype=np.float64).ravel()
    return float(np.mean(s <= threshold)) if len(s) else 1.0
