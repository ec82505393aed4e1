"""A bundle's fine-tuned backbone file (``backbone.pt``): hashed like every other file, refused when altered or
missing, and loaded by the Embedder only when its tensors fit the network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.index import l2_normalize
from shared.model import Embedder, EmbedderConfig
from shared.model.embedder import load_tuned_state
from shared.recognition import Bundle, BundleIntegrityError, LandmarkInfo, Thresholds, load_bundle, save_bundle
from shared.recognition.bundle import BACKBONE_FILE, MANIFEST, sha256_file, verify_bundle

TUNED = {"pool.p": torch.tensor([4.5]), "backbone.net._bn1.running_mean": torch.full((1280,), 0.25)}


def _bundle(backbone_state: dict | None = TUNED, *, finetune: bool = True) -> Bundle:
    rng = np.random.default_rng(0)
    model = {"backbone": "efficientnet_lite2", "pooling": "gem", "image_size": 64, "embedding_dim": 8}
    if finetune:
        model["finetune"] = {"blocks": 1, "tensors": len(backbone_state or {})}
    return Bundle(
        version="v-tuned",
        model=model,
        thresholds=Thresholds(global_score=0.5, verification=0.5, geo=0.4),
        landmarks=(LandmarkInfo(1, "tower", "Tower"),),
        centroids=l2_normalize(rng.standard_normal((2, 8))),
        centroid_landmarks=np.array([1, 1]),
        references=l2_normalize(rng.standard_normal((2, 8))),
        reference_landmarks=np.array([1, 1]),
        backbone_state=backbone_state,
    )


def test_the_backbone_file_round_trips_and_is_listed_with_its_hash(tmp_path: Path) -> None:
    folder = save_bundle(_bundle(), tmp_path / "v")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["files"][BACKBONE_FILE] == sha256_file(folder / BACKBONE_FILE)
    loaded = load_bundle(folder)
    assert loaded.backbone_state is not None and set(loaded.backbone_state) == set(TUNED)
    assert all(torch.equal(loaded.backbone_state[k], v) for k, v in TUNED.items())
    assert load_bundle(save_bundle(_bundle(None, finetune=False), tmp_path / "plain")).backbone_state is None
    assert not (tmp_path / "plain" / BACKBONE_FILE).exists()


def test_a_tampered_backbone_file_is_refused(tmp_path: Path) -> None:
    folder = save_bundle(_bundle(), tmp_path / "v")
    torch.save({**TUNED, "pool.p": torch.tensor([9.0])}, folder / BACKBONE_FILE)
    with pytest.raises(BundleIntegrityError, match="sha256 mismatch"):
        load_bundle(folder)


def test_a_fine_tuned_bundle_without_its_backbone_file_is_refused(tmp_path: Path) -> None:
    folder = save_bundle(_bundle(), tmp_path / "v")
    (folder / BACKBONE_FILE).unlink()
    with pytest.raises(BundleIntegrityError, match="missing"):
        verify_bundle(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["files"][BACKBONE_FILE]  # file and its manifest line both gone: the model still says fine-tuned
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleIntegrityError, match="fine-tuned"):
        load_bundle(folder)
    with pytest.raises(ValueError, match="no backbone weights"):
        save_bundle(_bundle(None), tmp_path / "w")


def test_the_embedder_loads_tuned_tensors_over_the_packaged_weights_and_refuses_misfits() -> None:
    config = EmbedderConfig(image_size=64)
    plain = Embedder(config, device="cpu")
    tuned = Embedder(config, device="cpu", backbone_state=TUNED)
    plain.load()
    tuned.load()
    assert tuned.net is not None and plain.net is not None
    assert tuned.net.pool.p.item() == pytest.approx(4.5) and plain.net.pool.p.item() == pytest.approx(3.0)
    assert torch.equal(tuned.net.backbone.net._bn1.running_mean, TUNED["backbone.net._bn1.running_mean"])
    untouched = "backbone.net._conv_stem.weight"
    assert torch.equal(tuned.net.state_dict()[untouched], plain.net.state_dict()[untouched])
    with pytest.raises(ValueError, match="unknown keys"):
        load_tuned_state(plain.net, {"backbone.no_such.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unknown keys"):
        load_tuned_state(plain.net, {"head.fc.weight": torch.zeros(1)})  # the head has its own file
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_tuned_state(plain.net, {"pool.p": torch.zeros(3)})
