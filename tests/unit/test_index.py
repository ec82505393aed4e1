"""Centroid clustering and the Faiss landmark index."""

from __future__ import annotations

import numpy as np
import pytest

from shared.index import LandmarkIndex, build_centroids, cluster_centroids, l2_normalize, min_cluster_size_for


def _cluster(rng: np.random.Generator, center: np.ndarray, n: int, noise: float = 0.05) -> np.ndarray:
    return l2_normalize(center + noise * rng.standard_normal((n, len(center))))


def _axis(dim: int, i: int) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def test_two_planted_clusters_give_two_centroids_near_their_centres() -> None:
    rng = np.random.default_rng(0)
    a, b = _axis(32, 0), _axis(32, 1)
    x = np.concatenate([_cluster(rng, a, 20), _cluster(rng, b, 15)])
    c = cluster_centroids(x, distance_threshold=0.5)
    assert c.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-5)
    assert sorted(np.round((c @ np.stack([a, b]).T).max(axis=0), 1).tolist()) == [1.0, 1.0]


def test_tiny_cluster_is_dropped() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([_cluster(rng, _axis(16, 0), 30), _cluster(rng, _axis(16, 5), 2)])
    c = cluster_centroids(x, distance_threshold=0.5, min_cluster_size=5)
    assert c.shape == (1, 16)
    assert c[0] @ _axis(16, 0) > 0.99


def test_minimum_scales_with_gallery_size() -> None:
    assert min_cluster_size_for(10) == 3
    assert min_cluster_size_for(200, fraction=0.1) == 20
    assert min_cluster_size_for(500, fraction=0.1, floor=50) == 50


def test_always_at_least_one_centroid() -> None:
    rng = np.random.default_rng(2)
    scattered = l2_normalize(rng.standard_normal((6, 64)))  # all far apart: every cluster is a singleton
    c = cluster_centroids(scattered, distance_threshold=0.1, min_cluster_size=3)
    assert c.shape == (1, 64)
    np.testing.assert_allclose(c[0], l2_normalize(scattered.mean(0, keepdims=True))[0], rtol=1e-5)
    assert cluster_centroids(scattered[:1]).shape == (1, 64)
    with pytest.raises(ValueError):
        cluster_centroids(np.zeros((0, 8), np.float32))


def test_build_centroids_labels_every_row_and_keeps_every_landmark() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([_cluster(rng, _axis(8, 0), 10), _cluster(rng, _axis(8, 1), 4)])
    ids = np.array([7] * 10 + [9] * 4)
    c, owners = build_centroids(x, ids, distance_threshold=0.5)
    assert len(c) == len(owners)
    assert set(owners.tolist()) == {7, 9}
    assert c.dtype == np.float32 and owners.dtype == np.int64


def test_top_landmarks_takes_the_max_over_a_landmarks_centroids() -> None:
    vecs = np.stack([_axis(4, 0), _axis(4, 1), _axis(4, 2)])
    index = LandmarkIndex(vecs, np.array([1, 1, 2]))
    q = l2_normalize(np.array([[0.1, 0.9, 0.3, 0.0]]))
    ranked = index.top_landmarks(q, k=5)[0]
    assert [lid for lid, _ in ranked] == [1, 2]
    assert ranked[0][1] == pytest.approx(q[0, 1], rel=1e-5)
    np.testing.assert_allclose(index.landmark_scores(q[0], [2, 1, 3]), [q[0, 2], q[0, 1], -np.inf], rtol=1e-5)
    np.testing.assert_allclose(index.mean_scores(q[0], [1]), [(q[0, 0] + q[0, 1]) / 2], rtol=1e-5)
