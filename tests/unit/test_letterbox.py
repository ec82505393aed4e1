"""Photos of different shapes share one forward pass (letterboxed, the padding masked in every spatial layer) and
each still gets the embedding it gets alone; the GPU's batching and half precision, run here on the CPU."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from shared.model import Embedder, EmbedderConfig
from shared.model.embedder import batch_rows, plan_batches, resolve_precision
from shared.model.masking import PaddingMask, canvas_offset, region_mask
from shared.model.preprocess import canvas_sides, letterbox, normalize, to_tensor

# 4:3, 3:4, 16:9, a panorama, a square and odd sizes: every parity of every strided layer.
SHAPES = ((400, 300), (300, 400), (480, 270), (500, 170), (333, 333), (401, 287), (257, 399))


def drawn(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, size[0] - 40)), int(rng.integers(0, size[1] - 40))
        d.ellipse([x0, y0, x0 + 50, y0 + 35], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


PHOTOS = [drawn(i, size) for i, size in enumerate(SHAPES)]


@pytest.mark.parametrize("size", range(1, 200))
def test_same_padding_offset_rounds_every_side_up_to_the_stride(size: int) -> None:
    offset = canvas_offset(size, "same", 32)
    assert 0 <= offset < 32
    assert size + offset == -(-size // 32) * 32
    assert canvas_offset(size, "symmetric", 32) == 0


def test_region_mask_covers_each_photo_at_every_resolution() -> None:
    regions = torch.tensor([[0, 0, 64, 64], [8, 1, 24, 31]])
    full = region_mask(regions, (64, 64), (64, 64), torch.float32)
    assert full[0].sum() == 64 * 64 and full[1].sum() == 24 * 31
    assert full[1, 0, 8:32, 1:32].all() and full[1, 0, :8].sum() == 0
    quarter = region_mask(regions, (64, 64), (16, 16), torch.float32)
    assert quarter[1, 0].nonzero()[:, 0].unique().tolist() == [2, 3, 4, 5, 6, 7]  # rows 8 >> 2 .. + ceil(24 / 4)


def test_letterbox_places_each_photo_in_its_region_and_pads_with_blank_rows() -> None:
    small = [PHOTOS[0].resize((120, 90)), PHOTOS[2].resize((128, 72))]
    canvas, regions = letterbox(small, padding="same", stride=32, rows=4)
    assert canvas.shape == (4, 96, 128, 3) and canvas.dtype == np.uint8
    assert regions[1] == (24, 0, 72, 128) and regions[2:] == [(0, 0, 96, 128)] * 2
    np.testing.assert_array_equal(canvas[1, 24:96, :128], np.asarray(small[1]))
    assert canvas[1, :24].max() == 0 and canvas[2:].max() == 0
    bucketed, _ = letterbox(small, padding="same", stride=32, sides=canvas_sides(128, 32))
    assert bucketed.shape[1:3] == (96, 128)
    assert canvas_sides(384, 32) == (288, 384)


def test_normalize_on_the_device_matches_the_float_path() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = to_tensor([Image.fromarray(p) for p in pixels], mean, std)
    for channels_last in (False, True):
        got = normalize(torch.from_numpy(pixels), mean, std, channels_last=channels_last)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        assert got.is_contiguous(memory_format=torch.channels_last) is channels_last


def test_plans_one_pass_per_batch_and_few_row_counts() -> None:
    sizes = [(288, 384), (384, 288), (216, 384), (288, 384)]
    assert plan_batches(sizes, 16) == [[2, 0, 3, 1]]
    assert [len(p) for p in plan_batches(sizes * 5, 16)] == [16, 4]
    assert [batch_rows(n, 64) for n in (1, 2, 3, 5, 17, 64)] == [1, 2, 4, 8, 32, 64]
    assert batch_rows(20, 16) == 20  # never fewer rows than photos


def test_auto_precision_is_fp16_on_cuda_and_fp32_on_cpu() -> None:
    assert resolve_precision("auto", torch.device("cuda")) == torch.float16
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("int8", torch.device("cpu"))


def alone(embedder: Embedder, photos: list[Image.Image]) -> np.ndarray:
    return np.concatenate([embedder.embed([p]) for p in photos])


def gpu_batching(config: EmbedderConfig, **kwargs: object) -> Embedder:
    """The GPU's batching on the CPU: every photo in one pass, three canvases, power-of-two rows."""
    return Embedder(config, device="cpu", threads=1, pass_size=16, bucket_shapes=True, **kwargs)  # type: ignore[arg-type]


def test_mixed_shapes_in_one_pass_embed_as_alone_with_real_lite2_weights() -> None:
    config = EmbedderConfig(image_size=160)
    single = alone(Embedder(config, device="cpu", threads=1), PHOTOS)
    batched = gpu_batching(config, classifier=True)
    passes = []
    batched.load()
    assert batched.net is not None
    batched.net.backbone.register_forward_hook(lambda _m, args, _o: passes.append(tuple(args[0].shape)))
    together, logits = batched.embed_with_logits(PHOTOS)
    assert passes == [(8, 3, 160, 160)]  # seven photos, one pass, rows rounded up to a power of two
    np.testing.assert_array_less(0.99999, (together * single).sum(axis=1))
    _, alone_logits = Embedder(config, device="cpu", threads=1, classifier=True).embed_with_logits(PHOTOS[:1])
    np.testing.assert_allclose(logits[:1], alone_logits, atol=1e-3)


def test_mixed_shapes_in_one_pass_with_symmetric_padding_and_flip() -> None:
    torch.manual_seed(0)
    config = EmbedderConfig(backbone="resnet50", image_size=96, flip=True)
    single = alone(Embedder(config, device="cpu", threads=1, pretrained=False), PHOTOS)
    torch.manual_seed(0)
    together = gpu_batching(config, pretrained=False).embed(PHOTOS)
    np.testing.assert_array_less(0.99999, (together * single).sum(axis=1))


def test_without_masks_the_padding_would_leak_into_the_embedding() -> None:
    """The masks are what makes the padded pass exact: with them idle the same pass moves the embeddings."""
    config = EmbedderConfig(image_size=160)
    single = alone(Embedder(config, device="cpu", threads=1), PHOTOS[:3])
    batched = gpu_batching(config)
    batched.load()
    assert batched.net is not None
    mask = PaddingMask.attach(batched.net.backbone)
    mask.active = lambda regions, canvas: contextlib.nullcontext()  # type: ignore[method-assign]
    leaky = batched.embed(PHOTOS[:3])
    assert float((leaky * single).sum(axis=1).min()) < 0.999


def test_half_precision_stays_within_parity_of_fp32() -> None:
    config = EmbedderConfig(image_size=160)
    reference = alone(Embedder(config, device="cpu", threads=1), PHOTOS)
    half = gpu_batching(config, precision="fp16", channels_last=True).embed(PHOTOS)
    np.testing.assert_array_less(0.999, (half * reference).sum(axis=1))
