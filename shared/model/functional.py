"""Pure tensor functions used by the modules (as in cnnimageretrieval-pytorch's ``layers/functional.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling over the spatial dims: p=1 is average pooling, p->inf max pooling."""
    return F.avg_pool2d(x.clamp(min=eps).pow(p), (x.size(-2), x.size(-1))).pow(1.0 / p)


def avg(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling, kept N x C x 1 x 1 like :func:`gem`."""
    return F.adaptive_avg_pool2d(x, 1)


def l2n(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L2-normalise the rows so inner product equals cosine similarity."""
    return x / (torch.norm(x, p=2, dim=1, keepdim=True) + eps)
