"""The retrieval network assembled from parts: backbone -> pool -> L2 -> head -> L2."""

from __future__ import annotations

import torch
from torch import nn

from shared.model import functional as LF


class RetrievalNet(nn.Module):
    """Global-descriptor network; split in :meth:`descriptor` and :meth:`project` so test-time augmentation can
    average pooled descriptors before the head."""

    def __init__(self, backbone: nn.Module, pool: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = pool
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's N x C x h x w feature map (used by the class-activation explanation)."""
        return self.backbone(x)

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, L2-normalised N x C descriptor."""
        return LF.l2n(self.pool(self.backbone(x)).flatten(1))

    def project(self, d: torch.Tensor) -> torch.Tensor:
        """Head + L2: pooled descriptors to embeddings."""
        return LF.l2n(self.head(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.descriptor(x))
