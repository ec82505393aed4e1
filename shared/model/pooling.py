"""Global pooling layers chosen by name: ``gem`` (learnable p, default 3) and ``avg``; both take an optional
mask so a letterboxed photo is pooled over its own region only."""

from __future__ import annotations

import torch
from torch import nn

from shared.model import functional as LF


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al.); p is a parameter so a trained head can tune it."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return LF.gem(x, p=self.p, eps=self.eps, mask=mask)

    def extra_repr(self) -> str:
        return f"p={self.p.data.tolist()[0]:.4f}, eps={self.eps}"


class AvgPool(nn.Module):
    """Global average pooling (the ImageNet classifier's own pooling)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return LF.avg(x, mask)


POOLINGS: dict[str, type[nn.Module]] = {"gem": GeM, "avg": AvgPool}


def build_pooling(name: str) -> nn.Module:
    """Return the pooling layer called ``name``; a clear error lists the known ones."""
    try:
        return POOLINGS[name]()
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; known: {', '.join(sorted(POOLINGS))}") from None
