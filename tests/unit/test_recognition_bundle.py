"""Model bundle: save/load round trip, integrity checks, and the builder shared with the evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.index import LandmarkIndex, l2_normalize
from shared.recognition import (
    Bundle,
    BundleIntegrityError,
    DecisionParams,
    LandmarkInfo,
    Thresholds,
    build_bundle_from_embeddings,
    load_bundle,
    save_bundle,
)
from shared.recognition.build import candidate_scores, pick_references

LANDMARKS = (
    LandmarkInfo(1, "colosseum", "Colosseum", "Rome", "Italy", 41.8902, 12.4922),
    LandmarkInfo(2, "taj_mahal", "Taj Mahal", "Agra", "India", 27.1751, 78.0421),
)


def _bundle(head_state: dict | None = None) -> Bundle:
    rng = np.random.default_rng(0)
    return Bundle(
        version="2024-01-01-abc",
        model={"backbone": "efficientnet_lite2", "pooling": "gem", "image_size": 260, "embedding_dim": 8},
        thresholds=Thresholds(global_score=0.7, verification=0.6, geo=0.4, margin=0.05, per_landmark={2: 0.65}),
        landmarks=LANDMARKS,
        centroids=l2_normalize(rng.standard_normal((3, 8))),
        centroid_landmarks=np.array([1, 1, 2]),
        references=l2_normalize(rng.standard_normal((4, 8))),
        reference_landmarks=np.array([1, 1, 2, 2]),
        decision=DecisionParams(geo_radius_km=1.5, top_k=2),
        metrics={"landmark_accuracy": 0.8},
        head_state=head_state,
    )


def test_round_trip(tmp_path: Path) -> None:
    b = _bundle()
    folder = save_bundle(b, tmp_path / "v1")
    loaded = load_bundle(folder)
    assert loaded.version == b.version and loaded.thresholds == b.thresholds
    assert loaded.landmarks == LANDMARKS and loaded.decision == b.decision
    assert loaded.metrics == b.metrics and loaded.model == b.model and loaded.created_at == b.created_at
    np.testing.assert_array_equal(loaded.centroids, b.centroids)
    np.testing.assert_array_equal(loaded.reference_landmarks, b.reference_landmarks)
    assert loaded.head_state is None
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "centroids.npy",
        "centroid_landmarks.npy",
        "references.npy",
        "reference_landmarks.npy",
    }
    assert all(len(h) == 64 for h in manifest["files"].values())


def test_head_weights_round_trip(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    head = {"fc.weight": torch.eye(8), "fc.bias": torch.zeros(8)}
    loaded = load_bundle(save_bundle(_bundle(head), tmp_path / "v1"))
    assert loaded.head_state is not None
    assert torch.equal(loaded.head_state["fc.weight"], torch.eye(8))


def test_altered_file_raises_integrity_error(tmp_path: Path) -> None:
    folder = save_bundle(_bundle(), tmp_path / "v1")
    arr = np.load(folder / "centroids.npy")
    arr[0, 0] += 1.0
    np.save(folder / "centroids.npy", arr)
    with pytest.raises(BundleIntegrityError, match="sha256 mismatch"):
        load_bundle(folder)


def test_missing_file_or_manifest_raises_integrity_error(tmp_path: Path) -> None:
    folder = save_bundle(_bundle(), tmp_path / "v1")
    (folder / "references.npy").unlink()
    with pytest.raises(BundleIntegrityError, match="missing"):
        load_bundle(folder)
    with pytest.raises(BundleIntegrityError, match="manifest.json"):
        load_bundle(tmp_path)


def test_bundles_are_immutable(tmp_path: Path) -> None:
    save_bundle(_bundle(), tmp_path / "v1")
    with pytest.raises(FileExistsError):
        save_bundle(_bundle(), tmp_path / "v1")


def test_build_from_embeddings_calibrates_on_non_landmarks() -> None:
    rng = np.random.default_rng(5)
    dim = 16
    centres = np.eye(dim, dtype=np.float32)[:2]
    gallery = l2_normalize(np.repeat(centres, 20, axis=0) + 0.1 * rng.standard_normal((40, dim)))
    ids = np.array([1] * 20 + [2] * 20)
    non_landmarks = l2_normalize(rng.standard_normal((200, dim)))
    b = build_bundle_from_embeddings(
        version="v",
        model={"backbone": "x"},
        landmarks=LANDMARKS,
        gallery=gallery,
        gallery_landmarks=ids,
        non_landmarks=non_landmarks,
    )
    assert set(b.centroid_landmarks.tolist()) == {1, 2}
    assert b.references.shape == (40, dim)  # no hand-picked references: the gallery photos
    assert 0.0 < b.thresholds.global_score < 1.0
    s = candidate_scores(
        non_landmarks,
        LandmarkIndex(b.centroids, b.centroid_landmarks),
        LandmarkIndex(b.references, b.reference_landmarks),
        b.decision,
    )
    assert np.mean(s.verification <= b.thresholds.verification) >= 0.99
    assert np.mean(s.centroid <= b.thresholds.global_score) >= 0.9
    assert np.mean(s.centroid <= b.thresholds.geo) >= 0.9
    # each landmark's own threshold rejects every non-landmark's score against it
    for j, lid in enumerate(s.landmark_ids):
        assert np.all(s.all_verification[:, j] <= b.thresholds.per_landmark[int(lid)])


def test_margin_is_calibrated_on_the_gallerys_own_confusions() -> None:
    rng = np.random.default_rng(6)
    dim = 16
    # two look-alike landmarks (close centres) and one distinct: leave-one-out confuses the look-alikes
    centres = l2_normalize(np.stack([np.eye(dim)[0] + 0.9 * np.eye(dim)[1], np.eye(dim)[0] + 0.9 * np.eye(dim)[2]]))
    gallery = l2_normalize(np.repeat(centres, 30, axis=0) + 0.25 * rng.standard_normal((60, dim)))
    ids = np.array([1] * 30 + [2] * 30)
    kwargs = dict(
        version="v",
        model={},
        landmarks=LANDMARKS,
        gallery=gallery,
        gallery_landmarks=ids,
        non_landmarks=l2_normalize(np.abs(rng.standard_normal((100, dim))) * (np.arange(dim) >= 3)),
    )
    with_margin = build_bundle_from_embeddings(**kwargs)
    without = build_bundle_from_embeddings(**kwargs, margin_share=0.0)
    assert with_margin.thresholds.margin > 0.0
    assert without.thresholds.margin == 0.0


def test_references_are_the_photos_closest_to_the_mean() -> None:
    x = l2_normalize(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]]))
    refs, owners = pick_references(x, np.array([1, 1, 1, 1]), n=2)
    mean = l2_normalize(x.mean(0, keepdims=True))[0]
    expected = np.argsort(-(x @ mean))[:2]
    np.testing.assert_allclose(refs, x[expected])
    assert owners.tolist() == [1, 1]
