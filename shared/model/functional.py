"""Pure tensor functions used by the modules (as in cnnimageretrieval-pytorch's ``layers/functional.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gem(
    x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Generalised-mean pooling over the spatial dims: p=1 is average pooling, p->inf max pooling. ``mask``
    (N x 1 x h x w, 1 = the photo, 0 = padding) pools each photo over its own region only."""
    if mask is None:
        # a mean over the spatial dims, not avg_pool2d with a size-dependent kernel: exportable to ONNX with a
        # dynamic input size (shared.model.onnx_export)
        return x.clamp(min=eps).pow(p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / p)
    return masked_mean(x.clamp(min=eps).pow(p), mask).pow(1.0 / p)


def avg(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Global average pooling, kept N x C x 1 x 1 like :func:`gem`; ``mask`` as there."""
    if mask is None:
        return F.adaptive_avg_pool2d(x, 1)
    return masked_mean(x, mask)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the spatial cells where ``mask`` is 1, N x C x 1 x 1."""
    mask = mask.to(x.dtype)
    return (x * mask).sum(dim=(-2, -1), keepdim=True) / mask.sum(dim=(-2, -1), keepdim=True)


def l2n(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L2-normalise the rows so inner product equals cosine similarity."""
    return x / (torch.norm(x, p=2, dim=1, keepdim=True) + eps)
