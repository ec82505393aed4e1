"""Great-circle distance and radius filtering for photos that carry GPS."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)


def haversine_km(lat1: float, lon1: float, lat2: np.ndarray | float, lon2: np.ndarray | float) -> np.ndarray:
    """Distance in km from one point to one or many points (degrees in, km out)."""
    p1, l1 = np.radians(lat1), np.radians(lon1)
    p2, l2 = np.radians(np.asarray(lat2, dtype=np.float64)), np.radians(np.asarray(lon2, dtype=np.float64))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def within_radius(gps: tuple[float, float], lats: np.ndarray, lons: np.ndarray, radius_km: float) -> np.ndarray:
    """Boolean mask of the landmarks within ``radius_km``; landmarks without coordinates (NaN) never are."""
    d = haversine_km(gps[0], gps[1], lats, lons)
    return np.nan_to_num(d, nan=np.inf) <= radius_km
