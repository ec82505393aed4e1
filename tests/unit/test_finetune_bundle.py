"""A tiny ``finetune`` run (drawn photos, 1 epoch, 64 px, CPU) -> bundle folder -> loaded: the workers' network
embeds exactly as the fine-tuned network did in memory, from the tuned tensors alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from devtools.stack.testing import drawn_photo as drawn
from shared.index import l2_normalize
from shared.model import Embedder, EmbedderConfig
from shared.model.head import project
from shared.recognition import (
    Bundle,
    BundleIntegrityError,
    LandmarkInfo,
    Recognizer,
    Thresholds,
    load_bundle,
    save_bundle,
)
from shared.recognition.bundle import BACKBONE_FILE
from shared.training.finetune import FinetuneResult, finetune, pooled_features
from shared.training.trainer import TrainConfig, TrainingData

CONFIG = EmbedderConfig(image_size=64)


IMAGES = [drawn(k, s) for k in (0, 1, 2) for s in range(3)]


@pytest.fixture(scope="module")
def tuned() -> FinetuneResult:
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    config = TrainConfig(epochs=1, embedding_dim=8, batch_size=3, curriculum=False, input_dropout=0.0)
    return finetune(lambda i: IMAGES[i], TrainingData(labels, 2, [""] * 9), config, CONFIG, blocks=1, device="cpu")


def in_memory(result: FinetuneResult, images: list[Image.Image]) -> np.ndarray:
    """The fine-tuned network's embeddings from its full in-memory state (every backbone tensor, not the subset)."""
    pooled = pooled_features(images, CONFIG, result.backbone_state, result.pooling_state, device="cpu")
    return project(result.train.head_state, pooled)


def tuned_bundle(result: FinetuneResult) -> Bundle:
    emb = in_memory(result, IMAGES)
    return Bundle(
        version="v-finetuned",
        model={**CONFIG.to_dict(), "embedding_dim": 8, "finetune": {"blocks": 1}},
        thresholds=Thresholds(global_score=0.5, verification=0.5, geo=0.4),
        landmarks=(LandmarkInfo(1, "red", "Red"), LandmarkInfo(2, "blue", "Blue")),
        centroids=l2_normalize(emb[[0, 3]]),
        centroid_landmarks=np.array([1, 2]),
        references=emb[:6],
        reference_landmarks=np.array([1, 1, 1, 2, 2, 2]),
        head_state=result.train.head_state,
        backbone_state=result.tuned_state,
    )


def test_the_bundle_keeps_only_the_tuned_tensors(tuned: FinetuneResult) -> None:
    state = tuned.tuned_state
    assert "pool.p" in state and any(k.startswith("backbone.net._conv_head") for k in state)
    assert any(k.startswith("backbone.net._blocks.") for k in state)
    assert not any("_conv_stem" in k or "_blocks.0." in k for k in state)
    assert len(state) < len(tuned.backbone_state) / 4


def test_a_loaded_fine_tuned_bundle_embeds_like_the_network_in_memory(tuned: FinetuneResult, tmp_path: Path) -> None:
    folder = save_bundle(tuned_bundle(tuned), tmp_path / "v-finetuned")
    assert (folder / BACKBONE_FILE).is_file()
    loaded = load_bundle(folder)
    recognizer = Recognizer.from_bundle(loaded, device="cpu", threads=1, scenes=False)
    queries = [drawn(0, 10), drawn(1, 11), drawn(2, 12)]
    got = recognizer.embed(queries)
    np.testing.assert_allclose(got, in_memory(tuned, queries), atol=1e-4)
    untuned = Embedder(CONFIG, device="cpu", threads=1, head_state=tuned.train.head_state).embed(queries)
    assert not np.allclose(untuned, got, atol=1e-3)  # the tuned tensors made the difference


def test_a_tampered_backbone_file_is_refused(tuned: FinetuneResult, tmp_path: Path) -> None:
    folder = save_bundle(tuned_bundle(tuned), tmp_path / "v-finetuned")
    state = torch.load(folder / BACKBONE_FILE, weights_only=True)
    state["pool.p"] = state["pool.p"] + 1.0
    torch.save(state, folder / BACKBONE_FILE)
    with pytest.raises(BundleIntegrityError, match="sha256 mismatch"):
        load_bundle(folder)
