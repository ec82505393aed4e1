"""SIFT features of one photo, Lowe's ratio-test matches between two, and RANSAC homography inliers.

The inlier count of the best homography is the peer's similarity score: a landmark seen again shares many
keypoints that one planar-ish transform maps onto each other; an unrelated photo's matches scatter.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MIN_MATCHES = 4  # a homography needs four point pairs
# A homography between two photos of one scene keeps orientation and roughly the scale; one that mirrors,
# collapses (determinant near 0) or bends strongly is RANSAC fitting noise, e.g. many points sent onto a few.
MIN_DET, MAX_DET = 1 / 25, 25.0
MAX_PERSPECTIVE = 0.004  # |h31|, |h32| in 1/px: at 640 px, w varies by at most ~2.5 across the photo


@dataclass(frozen=True)
class Features:
    """Keypoint positions (N x 2, pixels of the resized photo) and their SIFT descriptors (N x 128 float32)."""

    points: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return int(len(self.points))


@dataclass(frozen=True)
class Verification:
    matches: int  # ratio-test matches
    inliers: int  # of those, consistent with the RANSAC homography (0 when none was found)
    homography: np.ndarray | None  # 3 x 3, maps this query's points onto the other photo's


def _gray(image: Image.Image | np.ndarray, max_side: int) -> np.ndarray:
    if isinstance(image, Image.Image):
        if max(image.size) > max_side:
            scale = max_side / max(image.size)
            image = image.resize(
                (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
            )
        return np.asarray(image.convert("L"))
    gray = np.asarray(image)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    if max(gray.shape[:2]) > max_side:
        scale = max_side / max(gray.shape[:2])
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return gray


def extract(
    image: Image.Image | np.ndarray, *, max_side: int = 640, n_features: int = 1000, root: bool = False
) -> Features:
    """SIFT on the grey photo with its long side reduced to ``max_side``; the ``n_features`` strongest keypoints.

    ``root``: RootSIFT (L1-normalise, square root; Arandjelovic & Zisserman 2012), Hellinger instead of
    Euclidean distance between descriptors.
    """
    sift = cv2.SIFT_create(nfeatures=n_features)
    keypoints, descriptors = sift.detectAndCompute(_gray(image, max_side), None)
    if descriptors is None or not keypoints:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    descriptors = descriptors.astype(np.float32)
    if root:
        descriptors = np.sqrt(descriptors / np.maximum(descriptors.sum(axis=1, keepdims=True), 1e-7))
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32)
    return Features(points, np.ascontiguousarray(descriptors))


def match(query: Features, other: Features, *, ratio: float = 0.75) -> np.ndarray:
    """Query -> other index pairs (M x 2) whose nearest neighbour beats the second nearest by ``ratio``.

    One-to-one: where several query keypoints pick the same keypoint of the other photo (text, repeated
    windows), only the closest stays; otherwise a homography that maps many points onto one scores high.
    """
    if len(query) == 0 or len(other) < 2:
        return np.zeros((0, 2), np.int64)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query.descriptors, other.descriptors, k=2)
    best: dict[int, tuple[float, int]] = {}
    for m, n in (p for p in pairs if len(p) == 2):
        if m.distance < ratio * n.distance and (m.trainIdx not in best or m.distance < best[m.trainIdx][0]):
            best[m.trainIdx] = (m.distance, m.queryIdx)
    kept = sorted((q, t) for t, (_, q) in best.items())
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def plausible(homography: np.ndarray) -> bool:
    """Whether a homography could relate two photos of one scene (see MIN_DET, MAX_PERSPECTIVE)."""
    h = homography / homography[2, 2] if homography[2, 2] else homography
    det = h[0, 0] * h[1, 1] - h[0, 1] * h[1, 0]
    return bool(MIN_DET < det < MAX_DET and abs(h[2, 0]) < MAX_PERSPECTIVE and abs(h[2, 1]) < MAX_PERSPECTIVE)


def verify(
    query: Features, other: Features, *, ratio: float = 0.75, reprojection_px: float = 5.0, seed: int = 0
) -> Verification:
    """Ratio-test matches, then a RANSAC homography; its inlier count is the geometric score."""
    pairs = match(query, other, ratio=ratio)
    if len(pairs) < MIN_MATCHES:
        return Verification(len(pairs), 0, None)
    src = query.points[pairs[:, 0]].reshape(-1, 1, 2)
    dst = other.points[pairs[:, 1]].reshape(-1, 1, 2)
    cv2.setRNGSeed(seed)  # RANSAC samples at random: same input, same inliers
    homography, mask = cv2.findHomography(src, dst, cv2.RANSAC, reprojection_px, maxIters=2000, confidence=0.995)
    if homography is None or mask is None or not plausible(homography):
        return Verification(len(pairs), 0, None)
    # SIFT repeats a keypoint per dominant orientation: count each pair of positions once.
    kept = mask.ravel().astype(bool)
    spots = np.round(np.hstack([src.reshape(-1, 2)[kept], dst.reshape(-1, 2)[kept]])).astype(np.int64)
    return Verification(len(pairs), len(np.unique(spots, axis=0)), homography)
