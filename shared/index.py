"""Centroids per landmark and the Faiss inner-product index over them (faiss is imported only here).

Centroids follow Boiarov & Tyantov ("Large scale landmark recognition via deep metric learning"): a landmark's
gallery is split by complete-link agglomerative clustering on cosine distance, small clusters (outliers, rare
views) are dropped, and each kept cluster contributes its normalised mean. A landmark always keeps at least one
centroid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import faiss
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length, as float32 (what Faiss wants)."""
    x = np.asarray(x, dtype=np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)).astype(np.float32)


def min_cluster_size_for(n_photos: int, *, fraction: float = 0.1, floor: int = 3) -> int:
    """The paper keeps clusters of >= 50 photos on a big gallery; scale that to this landmark's gallery size."""
    return max(floor, math.ceil(n_photos * fraction))


def cluster_centroids(
    embeddings: np.ndarray,
    *,
    distance_threshold: float = 0.6,
    min_cluster_size: int | None = None,
    fraction: float = 0.1,
) -> np.ndarray:
    """Centroids (K x D, L2-normalised) of one landmark's gallery embeddings.

    Complete linkage cut at ``distance_threshold`` (cosine distance: every pair inside a cluster is at least
    ``1 - distance_threshold`` similar). Clusters smaller than ``min_cluster_size`` (default:
    :func:`min_cluster_size_for`) are dropped; when none is left the mean of all photos is the single centroid.
    """
    x = l2_normalize(embeddings)
    if len(x) == 0:
        raise ValueError("a landmark needs at least one gallery embedding")
    if len(x) == 1:
        return x.copy()
    minimum = min_cluster_size if min_cluster_size else min_cluster_size_for(len(x), fraction=fraction)
    z = linkage(x.astype(np.float64), method="complete", metric="cosine")
    labels = fcluster(z, t=distance_threshold, criterion="distance")
    centroids = [x[labels == c].mean(axis=0) for c in np.unique(labels) if np.sum(labels == c) >= minimum]
    if not centroids:
        centroids = [x.mean(axis=0)]
    return l2_normalize(np.stack(centroids))


def build_centroids(
    embeddings: np.ndarray,
    landmark_ids: Sequence[int] | np.ndarray,
    *,
    distance_threshold: float = 0.6,
    min_cluster_size: int | None = None,
    fraction: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """All landmarks' centroids stacked, with the landmark id of each row (int64)."""
    ids = np.asarray(landmark_ids, dtype=np.int64)
    blocks, owners = [], []
    for lid in np.unique(ids):
        c = cluster_centroids(
            embeddings[ids == lid],
            distance_threshold=distance_threshold,
            min_cluster_size=min_cluster_size,
            fraction=fraction,
        )
        blocks.append(c)
        owners.append(np.full(len(c), lid, dtype=np.int64))
    return np.concatenate(blocks).astype(np.float32), np.concatenate(owners)


class LandmarkIndex:
    """Exact inner-product search (IndexFlatIP) over labelled unit vectors (centroids or reference photos).

    Scores are per landmark: the max over that landmark's vectors.
    """

    def __init__(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        self.vectors = l2_normalize(vectors)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.vectors) != len(self.labels):
            raise ValueError("one label per vector")
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Faiss top-``k`` vectors: (scores, row indices), each Q x k (index -1 past the end)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return self.index.search(q, min(k, len(self)))

    def top_landmarks(self, queries: np.ndarray, k: int, *, depth: int = 256) -> list[list[tuple[int, float]]]:
        """Per query, up to ``k`` (landmark id, score) pairs, best first, one entry per landmark."""
        scores, rows = self.search(queries, max(k, depth))
        out: list[list[tuple[int, float]]] = []
        for srow, irow in zip(scores, rows, strict=True):
            best: dict[int, float] = {}
            for s, i in zip(srow, irow, strict=True):
                if i < 0:
                    continue
                lid = int(self.labels[i])
                if lid not in best:
                    best[lid] = float(s)
                    if len(best) == k:
                        break
            out.append(sorted(best.items(), key=lambda kv: -kv[1]))
        return out

    def landmark_scores(self, query: np.ndarray, landmark_ids: Sequence[int]) -> np.ndarray:
        """Max similarity of one query to each given landmark's vectors (-inf for a landmark without any)."""
        sims = self.vectors @ np.asarray(query, dtype=np.float32)
        out = np.full(len(landmark_ids), -np.inf, dtype=np.float32)
        for j, lid in enumerate(landmark_ids):
            mask = self.labels == lid
            if mask.any():
                out[j] = sims[mask].max()
        return out

    def mean_scores(self, query: np.ndarray, landmark_ids: Sequence[int], k: int | None = None) -> np.ndarray:
        """Mean similarity of one query to each given landmark's vectors, or to its ``k`` most similar ones
        (the verification score: a kNN vote over the landmark's reference photos)."""
        sims = self.vectors @ np.asarray(query, dtype=np.float32)
        out = np.full(len(landmark_ids), -np.inf, dtype=np.float32)
        for j, lid in enumerate(landmark_ids):
            s = sims[self.labels == lid]
            if len(s):
                out[j] = (np.partition(s, len(s) - k)[len(s) - k :] if k and k < len(s) else s).mean()
        return out
