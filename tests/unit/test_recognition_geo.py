"""Haversine distance and radius filtering."""

from __future__ import annotations

import numpy as np
import pytest

from shared.recognition.geo import haversine_km, within_radius

COLOSSEUM = (41.8902, 12.4922)
TREVI = (41.9009, 12.4833)  # ~1.4 km away
ST_PETERS = (41.9022, 12.4539)  # ~3.4 km away


def test_haversine_known_distances() -> None:
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=1.0)  # Paris-London
    assert haversine_km(*COLOSSEUM, *COLOSSEUM) == pytest.approx(0.0, abs=1e-9)
    assert haversine_km(*COLOSSEUM, TREVI[0], TREVI[1]) == pytest.approx(1.41, abs=0.05)


def test_within_radius_is_inclusive_and_ignores_unknown_coordinates() -> None:
    lats = np.array([COLOSSEUM[0], TREVI[0], ST_PETERS[0], np.nan])
    lons = np.array([COLOSSEUM[1], TREVI[1], ST_PETERS[1], np.nan])
    assert within_radius(COLOSSEUM, lats, lons, 1.0).tolist() == [True, False, False, False]
    assert within_radius(COLOSSEUM, lats, lons, 2.0).tolist() == [True, True, False, False]
    assert within_radius(COLOSSEUM, lats, lons, 5.0).tolist() == [True, True, True, False]
