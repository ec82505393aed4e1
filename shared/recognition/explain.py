"""Class-activation style heat map: where the photo's spatial features resemble the matched centroid."""

from __future__ import annotations

import numpy as np
from PIL import Image


def jet(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> H x W x 3 uint8 with the classic "jet" colour map (blue = low, red = high)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay_heatmap(image: Image.Image, similarity: np.ndarray, *, alpha: float = 0.45) -> Image.Image:
    """Min-max scale the h x w similarity map, upsample it to the photo, colour-map and alpha-blend."""
    sim = np.asarray(similarity, dtype=np.float32)
    lo, hi = float(sim.min()), float(sim.max())
    norm = (sim - lo) / (hi - lo) if hi > lo else np.zeros_like(sim)
    small = Image.fromarray((norm * 255).astype(np.uint8), mode="L")
    big = np.asarray(small.resize(image.size, Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    heat = Image.fromarray(jet(big), mode="RGB")
    return Image.blend(image.convert("RGB"), heat, alpha)
