"""Photo -> network input. Kept apart so the resize policy is one obvious place.

A batch travels as uint8 pixels (N x H x W x 3, a quarter of float32's bytes) and is normalised on the device
(:func:`normalize`). Photos of different sizes share one batch by letterboxing (:func:`letterbox`) into a canvas
as large as the batch's largest photo; the network masks the rest (:mod:`shared.model.masking`), so each photo's
embedding is the one it gets alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from shared.model.masking import Region, canvas_offset

RESIZE_MODES = ("long", "square", "crop")


def resize(image: Image.Image, size: int, mode: str) -> Image.Image:
    """Resize for the network.

    ``long``: longer side to ``size``, aspect kept (whole photo, no distortion; photos of different shapes share
    a forward pass through :func:`letterbox`); ``square``: squash to size x size; ``crop``: shorter side to
    ``size`` then centre crop.
    """
    image = image.convert("RGB")
    w, h = image.size
    if mode == "long":
        s = size / max(w, h)
        return image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR, reducing_gap=3.0)
    if mode == "square":
        return image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    if mode == "crop":
        s = size / min(w, h)
        image = image.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BILINEAR)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        return image.crop((left, top, left + size, top + size))
    raise ValueError(f"unknown resize mode {mode!r}; known: {', '.join(RESIZE_MODES)}")


def to_tensor(images: Sequence[Image.Image], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Stack same-sized RGB images into a normalised N x 3 x H x W float32 tensor."""
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 255.0
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def letterbox(
    images: Sequence[Image.Image],
    *,
    padding: str,
    stride: int,
    rows: int | None = None,
    sides: Sequence[int] = (),
) -> tuple[np.ndarray, list[Region]]:
    """RGB images -> one uint8 N x H x W x 3 canvas and each image's region (top, left, height, width) in it.

    Each image sits where the backbone's strided layers sample it as when alone (:func:`canvas_offset`: the
    top-left corner, or up to ``stride`` - 1 pixels in for TF "same" padding); the canvas is the smallest multiple
    of ``stride`` that holds every image, or the smallest of ``sides`` that does (a GPU sees a few canvas shapes,
    each tuned once), zeros elsewhere. ``rows`` > N adds blank rows (a batch padded to a size the device has seen
    before), each a region filling the canvas.
    """
    regions: list[Region] = []
    for im in images:
        top = canvas_offset(im.height, padding, stride)
        left = canvas_offset(im.width, padding, stride)
        regions.append((top, left, im.height, im.width))
    height = _canvas_side(max(t + h for t, _, h, _ in regions), stride, sides)
    width = _canvas_side(max(left + w for _, left, _, w in regions), stride, sides)
    n = max(len(images), rows or 0)
    canvas = np.zeros((n, height, width, 3), dtype=np.uint8)
    for i, (im, (top, left, h, w)) in enumerate(zip(images, regions, strict=True)):
        canvas[i, top : top + h, left : left + w] = np.asarray(im.convert("RGB"))
    regions += [(0, 0, height, width)] * (n - len(images))
    return canvas, regions


def canvas_sides(size: int, stride: int) -> tuple[int, int]:
    """The canvas sides a GPU pads to for photos resized to ``size`` on their long side: three quarters of it
    (4:3, 3:2 and 16:9 photos) and all of it, multiples of ``stride``; three canvas shapes in all."""
    full = _round_up(size, stride)
    return (_round_up(full * 3 // 4, stride), full)


def _canvas_side(needed: int, stride: int, sides: Sequence[int]) -> int:
    return next((s for s in sorted(sides) if s >= needed), _round_up(needed, stride))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def normalize(
    pixels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 N x H x W x 3 (on any device) -> normalised N x 3 x H x W in ``dtype`` (the values of
    :func:`to_tensor`, to float rounding); ``channels_last`` keeps it in NHWC memory order, what cuDNN's fastest
    convolutions want."""
    # One multiply-add per value in NHWC order, then one copy into the layout asked for: a third of the time of
    # permute -> divide -> subtract -> divide on a CPU.
    scale = torch.tensor([1.0 / (255.0 * v) for v in std], dtype=torch.float32, device=pixels.device)
    shift = torch.tensor([-m / v for m, v in zip(mean, std, strict=True)], dtype=torch.float32, device=pixels.device)
    x = torch.addcmul(shift, pixels.float(), scale).permute(0, 3, 1, 2)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(dtype).contiguous(memory_format=fmt)
