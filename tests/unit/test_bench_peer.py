"""The SIFT peer of bench/bench_peer.py: finds a planted homography, rejects an unrelated photo, calibrates."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("cv2", reason="opencv-python-headless (dev extra) is not installed")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches import each other this way

import cv2  # noqa: E402
from peer import VoteIndex, calibrate_inliers, extract, verify  # noqa: E402
from peer.gallery import shortlist_by_similarity, top_indices  # noqa: E402
from peer.sift import plausible  # noqa: E402

PLANTED = np.array([[0.9, 0.12, 30.0], [-0.08, 0.95, 20.0], [1e-4, -5e-5, 1.0]])


def textured(seed: int, size: int = 480) -> Image.Image:
    """Shapes of many sizes and colours over noise: corners and blobs everywhere for SIFT to find."""
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).resize((size, size))
    im = Image.fromarray((np.asarray(im) // 3 + 80).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(120):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(6, 60, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            d.rectangle([x, y, x + w, y + h], fill=colour)
        else:
            d.ellipse([x, y, x + w, y + h], fill=colour, outline=(0, 0, 0))
    return im


def warped(image: Image.Image, homography: np.ndarray) -> Image.Image:
    pixels = cv2.warpPerspective(np.asarray(image), homography, image.size, borderValue=(127, 127, 127))
    return Image.fromarray(pixels)


def test_finds_the_planted_homography_and_rejects_an_unrelated_image() -> None:
    original = textured(1)
    same = verify(extract(original), extract(warped(original, PLANTED)))
    other = verify(extract(original), extract(textured(2)))

    assert same.inliers >= 50
    assert other.inliers < 10
    assert same.homography is not None
    corners = np.array([[[100.0, 100.0]], [[380.0, 120.0]], [[240.0, 400.0]]])
    found = cv2.perspectiveTransform(corners, same.homography)
    assert np.abs(found - cv2.perspectiveTransform(corners, PLANTED)).max() < 3.0


def test_no_keypoints_means_no_match() -> None:
    blank = extract(Image.new("RGB", (200, 200), (90, 90, 90)))
    assert len(blank) == 0
    assert verify(blank, extract(textured(3))).inliers == 0


def test_degenerate_homographies_are_implausible() -> None:
    assert plausible(PLANTED)
    assert not plausible(np.diag([-1.0, 1.0, 1.0]))  # a mirror
    assert not plausible(np.diag([0.01, 0.01, 1.0]))  # everything onto a few pixels
    assert not plausible(np.array([[1.0, 0, 0], [0, 1.0, 0], [0.05, 0, 1.0]]))  # bends the plane


def test_vote_index_puts_the_matching_photo_first() -> None:
    photos = [extract(textured(seed)) for seed in (10, 11, 12)]
    query = extract(warped(textured(11), PLANTED))
    assert VoteIndex(photos).shortlist(query, 2)[0] == 1


def test_calibration_rejects_the_requested_share_of_non_landmarks() -> None:
    scores = list(range(100))  # best inlier counts of 100 non-landmarks: 0..99
    assert calibrate_inliers(scores, 0.99) == 99  # only the top one (99) passes
    assert calibrate_inliers(scores, 1.0) == 100  # none passes
    assert calibrate_inliers([4, 4, 4, 4], 0.99) == 5
    with pytest.raises(ValueError):
        calibrate_inliers([], 0.99)


def test_shortlists_are_best_first() -> None:
    assert top_indices(np.array([3, 9, 1, 9]), 3).tolist() == [1, 3, 0]
    gallery = np.eye(3, dtype=np.float32)
    assert shortlist_by_similarity(np.array([0.1, 0.2, 0.9]), gallery, 2).tolist() == [2, 1]
