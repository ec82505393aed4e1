"""The cleaning rule on synthetic embeddings: mean cosine distance to the references against a threshold."""

from __future__ import annotations

import numpy as np
import pytest

from shared.db.models import GalleryRole
from shared.gallery.cleaning import auto_references, decide_roles, mean_distances


def _around(direction: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    x = direction[None, :] + noise * rng.standard_normal((n, direction.size))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_mean_distance_is_one_minus_mean_cosine() -> None:
    refs = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    photos = np.array([[1, 0, 0], [0, 0, 1], [2, 2, 0]], np.float32)  # not normalised on purpose
    assert mean_distances(photos, refs) == pytest.approx([0.5, 1.0, 1 - np.sqrt(0.5)], abs=1e-6)


def test_planted_off_topic_photos_are_rejected_and_true_ones_kept() -> None:
    rng = np.random.default_rng(0)
    dim = 64
    landmark = rng.standard_normal(dim)
    true_photos = _around(landmark, 30, 0.08, rng)
    planted = _around(rng.standard_normal(dim), 5, 0.08, rng)  # another subject altogether
    refs = auto_references(true_photos, 5)
    roles = decide_roles(mean_distances(np.concatenate([true_photos, planted]), refs), max_distance=0.5)
    assert roles[:30] == [GalleryRole.train] * 30
    assert roles[30:] == [GalleryRole.rejected] * 5


def test_auto_references_are_the_photos_closest_to_the_mean() -> None:
    x = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1]], np.float32)
    refs = auto_references(x, 2)
    assert refs.shape == (2, 2)
    assert not any(np.allclose(r, [0, 1]) for r in refs)  # the outlier is no reference


def test_threshold_is_inclusive() -> None:
    roles = decide_roles(np.array([0.49, 0.5, 0.51]), 0.5)
    assert roles == [GalleryRole.train, GalleryRole.train, GalleryRole.rejected]
