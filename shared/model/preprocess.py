"""Photo -> normalised tensor. Kept apart so the resize policy is one obvious place."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

RESIZE_MODES = ("long", "square", "crop")


def resize(image: Image.Image, size: int, mode: str) -> Image.Image:
    """Resize for the network.

    ``long``: longer side to ``size``, aspect kept (whole photo, no distortion; one forward per size);
    ``square``: squash to size x size; ``crop``: shorter side to ``size`` then centre crop.
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
