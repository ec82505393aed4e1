"""Letterboxed batches that leave no trace of the padding in any embedding.

Photos of different shapes share one forward pass by sitting in a common canvas
(:func:`shared.model.preprocess.letterbox`). Masking only the pooling is not enough: each convolution wider than
1x1 lets the padding leak into the photo's border, which moved real embeddings by up to 0.06 in cosine (measured
on ``../shared/data`` test photos). So:

- every layer that looks at neighbours (convolutions and pools wider than 1x1) gets its input zeroed outside each
  photo's own region, which is exactly the zero padding that layer gives the photo when it runs alone; pointwise
  layers (1x1 convolutions, batch norm in eval mode, activations, residual sums) never mix positions;
- each photo sits where every strided layer samples it at the same positions as when alone
  (:func:`canvas_offset`): torchvision's fixed symmetric padding samples from the photo's first row whatever its
  size, so the top-left corner; TF "SAME" padding (EfficientNet-Lite) pads one more row in front of an odd-sized
  input than of an even one, so an odd size at a strided layer is matched by an odd offset there.

Then the padded batch gives every photo the embedding it gets alone, up to float rounding, for any photo size.
Valid for backbones whose spatial layers pad with zeros, or whose max-pools follow a ReLU (a zero is never the
maximum's only candidate), and that have no global operation inside (squeeze-excitation would see the padding):
EfficientNet-Lite and torchvision's ResNets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

_ATTRIBUTE = "_landmarks_padding_mask"
# A photo's place in a canvas: (top, left, height, width) in input pixels.
Region = tuple[int, int, int, int]


def canvas_offset(size: int, padding: str, stride: int) -> int:
    """Where a side of ``size`` pixels starts in the canvas so each strided layer samples it as when alone.

    ``same``: at the layer halving an odd size ``d`` (the m-th, counting from 0), TF padding puts one more row in
    front than the canvas (even sizes throughout) gets, so the photo starts one row later there: bit m of the
    offset is ``d`` mod 2. ``symmetric``: 0.
    """
    if padding == "symmetric":
        return 0
    if padding != "same":
        raise ValueError(f"unknown padding {padding!r}; known: same, symmetric")
    offset, d, bit = 0, size, 1
    while bit < stride:
        offset += bit * (d % 2)
        d, bit = -(-d // 2), bit * 2
    return offset


def region_mask(
    regions: torch.Tensor, canvas: tuple[int, int], shape: tuple[int, int], dtype: torch.dtype
) -> torch.Tensor:
    """N x 1 x h x w: 1 inside each photo's region at a feature map of ``shape`` (h, w), 0 elsewhere.

    ``regions`` is N x 4 (top, left, height, width) in the ``canvas`` (H, W) of the input. At a map 2^m times
    smaller a region starts at ``top >> m`` and spans ceil(height / 2^m) cells, what the photo alone gets.
    """
    h, w = shape
    height, width = canvas
    top = torch.div(regions[:, 0] * h, height, rounding_mode="floor")
    left = torch.div(regions[:, 1] * w, width, rounding_mode="floor")
    bottom = top + torch.div(regions[:, 2] * h + height - 1, height, rounding_mode="floor")
    right = left + torch.div(regions[:, 3] * w + width - 1, width, rounding_mode="floor")
    ys = torch.arange(h, device=regions.device)[None, :]
    xs = torch.arange(w, device=regions.device)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < bottom[:, None])
    in_cols = (xs >= left[:, None]) & (xs < right[:, None])
    return (in_rows[:, None, :, None] & in_cols[:, None, None, :]).to(dtype)


def is_spatial(module: nn.Module) -> bool:
    """A convolution or pool whose kernel spans more than one position (it would read the padding)."""
    if not isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        return False
    kernel = module.kernel_size
    return any(k > 1 for k in (kernel if isinstance(kernel, tuple | list) else (kernel, kernel)))


class PaddingMask:
    """Forward pre-hooks on a backbone's spatial layers, idle unless a padded batch runs (:meth:`active`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._regions: torch.Tensor | None = None
        self._canvas: tuple[int, int] = (0, 0)
        self._cache: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}

    @classmethod
    def attach(cls, backbone: nn.Module) -> PaddingMask:
        """The backbone's mask, hooking its spatial layers the first time."""
        existing = getattr(backbone, _ATTRIBUTE, None)
        if isinstance(existing, PaddingMask):
            return existing
        mask = cls()
        for module in backbone.modules():
            if is_spatial(module):
                module.register_forward_pre_hook(mask._hook)
        object.__setattr__(backbone, _ATTRIBUTE, mask)  # a plain attribute, not a registered submodule
        return mask

    @contextmanager
    def active(self, regions: Sequence[Region] | None, canvas: tuple[int, int]) -> Iterator[None]:
        """Mask every spatial layer to each photo's region of ``canvas`` while the block runs; None, or every
        photo filling the canvas, masks nothing. One padded batch at a time per backbone."""
        with self._lock:
            if regions is not None and any(tuple(r) != (0, 0, *canvas) for r in regions):
                self._regions = torch.tensor([list(r) for r in regions], dtype=torch.int64)
                self._canvas = canvas
            try:
                yield
            finally:
                self._regions = None
                self._cache.clear()

    def mask_like(self, x: torch.Tensor) -> torch.Tensor | None:
        """The mask at ``x``'s resolution, on its device and in its dtype; None when no padded batch runs."""
        if self._regions is None:
            return None
        key = (x.shape[-2], x.shape[-1], x.dtype, x.device)
        if key not in self._cache:
            if self._regions.device != x.device:
                self._regions = self._regions.to(x.device)
            self._cache[key] = region_mask(self._regions, self._canvas, key[:2], x.dtype)
        return self._cache[key]

    def _hook(self, _module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        mask = self.mask_like(args[0])
        if mask is None:
            return None
        return (args[0] * mask, *args[1:])
