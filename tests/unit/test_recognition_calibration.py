"""Threshold calibration: the lowest threshold that rejects the target share of non-landmark scores."""

from __future__ import annotations

import numpy as np
import pytest

from shared.recognition.calibration import SCORE_TOLERANCE, calibrate_threshold, rejected_share


def test_exact_order_statistic() -> None:
    scores = np.arange(1, 101, dtype=np.float64) / 100  # 0.01 .. 1.00
    t = calibrate_threshold(scores, 0.99)
    assert t == pytest.approx(0.99 + SCORE_TOLERANCE, abs=1e-12)
    assert rejected_share(scores, t) == pytest.approx(0.99)
    # one step lower rejects too few: t is the lowest threshold that works
    assert rejected_share(scores, 0.985) < 0.99


def test_a_calibration_photo_scored_again_stays_rejected() -> None:
    scores = np.array([0.1, 0.2, 0.41997716], dtype=np.float64)
    t = calibrate_threshold(scores, 1.0)
    again = np.float32(0.4199773)  # the same photo through Faiss in float32: 1.5e-7 higher
    assert not again > t


def test_rounds_up_to_whole_photos() -> None:
    scores = np.array([0.5, 0.1, 0.3, 0.2, 0.4])  # 5 photos: 0.9 needs ceil(4.5) = 5 rejected
    assert calibrate_threshold(scores, 0.9) == pytest.approx(0.5 + SCORE_TOLERANCE)
    assert calibrate_threshold(scores, 0.8) == pytest.approx(0.4 + SCORE_TOLERANCE)
    assert calibrate_threshold(scores, 1.0) == pytest.approx(0.5 + SCORE_TOLERANCE)


def test_order_and_infinities_do_not_matter() -> None:
    scores = np.array([0.9, -np.inf, 0.2, 0.7])
    assert calibrate_threshold(scores, 0.5) == pytest.approx(0.7 + SCORE_TOLERANCE)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="no non-landmark"):
        calibrate_threshold(np.array([]), 0.99)
    with pytest.raises(ValueError, match="rejection"):
        calibrate_threshold(np.array([0.1]), 0.0)
