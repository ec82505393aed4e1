"""The embedding network: pooling, backbones table, embedder shape and norm with the real Lite2 weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from shared.model import Embedder, EmbedderConfig
from shared.model.backbones import WeightsNotFoundError, backbone_spec, build_backbone
from shared.model.functional import avg, gem
from shared.model.head import EmbeddingHead, FusedHead, build_head, head_output_dim, with_raw_weight
from shared.model.pooling import GeM, build_pooling


def _drawn(seed: int, size: tuple[int, int] = (300, 220)) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, size[0] - 40)), int(rng.integers(0, size[1] - 40))
        d.rectangle([x0, y0, x0 + 40, y0 + 60], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


def test_gem_equals_average_pooling_at_p1() -> None:
    x = torch.rand(2, 5, 7, 3)
    torch.testing.assert_close(gem(x, p=1.0), avg(x))
    torch.testing.assert_close(GeM(p=1.0)(x), avg(x))


def test_gem_tends_to_max_pooling_for_large_p() -> None:
    x = torch.rand(1, 3, 4, 4) + 0.1
    assert torch.allclose(gem(x, p=60.0).flatten(), x.amax(dim=(2, 3)).flatten(), rtol=0.05)


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="known: avg, gem"):
        build_pooling("max")
    with pytest.raises(ValueError, match="efficientnet_lite2"):
        backbone_spec("vgg")


def test_resnet_without_operator_weights_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="WEIGHTS_PATH"):
        build_backbone("resnet50")
    with pytest.raises(WeightsNotFoundError, match="not found"):
        build_backbone("resnet50", tmp_path / "missing.pth")


def test_head_from_state_dict_and_identity_without() -> None:
    head, dim = build_head(16, None)
    assert isinstance(head, torch.nn.Identity) and dim == 16
    trained = EmbeddingHead(16, 4).state_dict()
    head, dim = build_head(16, trained)
    assert isinstance(head, EmbeddingHead) and dim == 4
    with pytest.raises(ValueError, match="16-dim"):
        build_head(32, trained)


def test_fused_head_scores_are_the_weighted_sum_of_raw_and_trained_cosines() -> None:
    torch.manual_seed(0)
    plain = EmbeddingHead(16, 4).eval()
    state = with_raw_weight(plain.state_dict(), 0.3)
    head, dim = build_head(16, state)
    assert isinstance(head, FusedHead) and dim == 20 == head_output_dim(16, state)
    x = torch.randn(5, 16)
    with torch.inference_mode():
        fused = head.eval()(x)
        raw = torch.nn.functional.normalize(x)
        trained = torch.nn.functional.normalize(plain(x))
    torch.testing.assert_close(fused.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(fused @ fused.T, 0.3 * raw @ raw.T + 0.7 * trained @ trained.T)
    assert set(with_raw_weight(state, 0.0)) == set(plain.state_dict())  # weight 0: the plain head again
    with pytest.raises(ValueError, match="raw_weight"):
        FusedHead(plain, 1.0)


def test_embedder_gives_unit_float32_rows_with_real_lite2_weights() -> None:
    emb = Embedder(EmbedderConfig(pooling="gem", image_size=224), device="cpu", batch_size=4, threads=1)
    assert not emb.loaded
    images = [_drawn(0), _drawn(1), _drawn(0, (220, 300))]
    out = emb.embed(images)
    assert emb.loaded
    assert out.shape == (3, 1280) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-4)
    again = emb.embed(images[:1])
    np.testing.assert_allclose(again[0], out[0], atol=1e-5)  # batch composition does not change a row
    assert float(out[0] @ out[1]) < 0.999  # different photos, different embeddings
    assert emb.describe()["embedding_dim"] == 1280
    sim = emb.similarity_map(images[0], out[0])
    assert sim.ndim == 2 and np.isfinite(sim).all()


def test_random_resnet_through_explicit_flag_and_flip_tta() -> None:
    cfg = EmbedderConfig(backbone="resnet50", pooling="avg", image_size=64, resize="square", flip=True)
    emb = Embedder(cfg, device="cpu", pretrained=False, threads=1)
    out = emb.embed([_drawn(2)])
    assert out.shape == (1, 2048)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-4)


def test_config_round_trips_through_a_dict() -> None:
    cfg = EmbedderConfig(pooling="avg", image_size=320, scales=(0.75, 1.0), flip=True)
    assert EmbedderConfig.from_dict({**cfg.to_dict(), "mean": [0.5] * 3}) == cfg
    assert cfg.key() != EmbedderConfig().key()
