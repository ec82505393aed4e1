"""Finding which gallery photos to verify, and where to put the inlier threshold.

DELF's recipe: every query descriptor looks up its nearest gallery descriptors (an approximate kd-tree here,
OpenCV's FLANN), each neighbour votes for the gallery photo it came from, and only the photos with most votes go
on to RANSAC (which costs milliseconds per pair, too much for a whole gallery).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from peer.sift import Features

FLANN_KDTREE = 1


class VoteIndex:
    """Approximate nearest neighbours over all gallery descriptors; votes per gallery photo."""

    def __init__(self, gallery: Sequence[Features], *, trees: int = 4, checks: int = 64) -> None:
        self.size = len(gallery)
        self.matcher = cv2.FlannBasedMatcher({"algorithm": FLANN_KDTREE, "trees": trees}, {"checks": checks})
        # FLANN wants at least one descriptor per added set; an empty photo gets a far-away dummy that never wins.
        blank = np.full((1, 128), 1e6, np.float32)
        self.matcher.add([f.descriptors if len(f) else blank for f in gallery])
        self.matcher.train()

    def votes(self, query: Features, *, neighbours: int = 3) -> np.ndarray:
        """Per gallery photo, how many query descriptors have one of their ``neighbours`` nearest in it."""
        counts = np.zeros(self.size, dtype=np.int64)
        if len(query) == 0:
            return counts
        for found in self.matcher.knnMatch(query.descriptors, k=neighbours):
            for photo in {m.imgIdx for m in found}:
                counts[photo] += 1
        return counts

    def shortlist(self, query: Features, n: int, *, neighbours: int = 3) -> np.ndarray:
        """Indices of the ``n`` gallery photos with most votes, best first."""
        return top_indices(self.votes(query, neighbours=neighbours), n)


def top_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest scores, largest first (ties: lower index first)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    return order[: min(n, len(order))]


def shortlist_by_similarity(query: np.ndarray, gallery: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` gallery photos most similar to one embedding (unit vectors: inner product), best first."""
    return top_indices(gallery @ np.asarray(query, dtype=np.float32), n)


def calibrate_inliers(negative_scores: Sequence[int] | np.ndarray, rejection: float = 0.99) -> int:
    """Smallest inlier count that rejects at least ``rejection`` of the known non-landmark photos.

    A photo is accepted when its best inlier count is >= the threshold, so the threshold sits one above the
    ``rejection`` quantile of the non-landmarks' best counts.
    """
    scores = np.sort(np.asarray(negative_scores, dtype=np.int64))
    if scores.size == 0:
        raise ValueError("calibration needs at least one non-landmark score")
    allowed = int(np.floor((1.0 - rejection) * scores.size + 1e-9))  # how many may pass
    return int(scores[scores.size - allowed - 1]) + 1 if allowed < scores.size else int(scores[0])
