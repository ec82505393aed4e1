"""A version without an open-set score is named as such whenever it is activated or trained (issue #17)."""

from __future__ import annotations

from shared.versions.registry import OPEN_SET_METRIC, open_set_warning


def test_a_version_without_an_open_set_score_gets_a_warning_that_names_it() -> None:
    warning = open_set_warning("v0002-trained", {"landmarks": 15, "calibration": "threshold rejects 99%"})
    assert warning is not None
    assert "v0002-trained has no open-set score" in warning
    assert "landmarks model build" in warning


def test_a_version_calibrated_for_unknown_landmarks_gets_none() -> None:
    assert open_set_warning("v0001", {OPEN_SET_METRIC: 0.9, "landmarks": 15}) is None
