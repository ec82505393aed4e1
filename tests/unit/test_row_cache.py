"""The evaluators' per-photo cache: a round trip, and a changed file misses instead of returning stale arrays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from shared.evaluation.row_cache import RowCache


def test_arrays_round_trip_and_a_changed_file_misses(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"first")
    cache = RowCache(tmp_path / "cache")
    assert cache.load(photo) is None
    cache.save(photo, embedding=np.arange(4, dtype=np.float32), gps=np.array([1.5, np.nan]))
    got = cache.load(photo)
    assert got is not None and set(got) == {"embedding", "gps"}
    np.testing.assert_array_equal(got["embedding"], np.arange(4, dtype=np.float32))
    assert got["gps"][0] == 1.5 and np.isnan(got["gps"][1])
    assert not list((tmp_path / "cache").rglob("*.tmp.npz"))  # written atomically, nothing left behind

    photo.write_bytes(b"second, longer")
    os.utime(photo, ns=(1, 1))
    assert cache.load(photo) is None
