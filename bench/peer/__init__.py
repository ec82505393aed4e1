"""The classical local-feature peer (SIFT keypoints, nearest neighbours, RANSAC), for bench/bench_peer.py.

Knows nothing of the project: it takes Pillow images or arrays and returns plain numbers, so its tests need
neither the model nor the photos.
"""

from peer.gallery import VoteIndex, calibrate_inliers, shortlist_by_similarity
from peer.sift import Features, Verification, extract, match, verify

__all__ = [
    "Features",
    "Verification",
    "VoteIndex",
    "calibrate_inliers",
    "extract",
    "match",
    "shortlist_by_similarity",
    "verify",
]
