"""The retrieval network assembled from parts: backbone -> pool -> L2 -> head -> L2."""

from __future__ import annotations

import torch
from torch import nn

from shared.model import functional as LF


class RetrievalNet(nn.Module):
    """Global-descriptor network; split in :meth:`descriptor` and :meth:`project` so test-time augmentation can
    average pooled descriptors before the head."""

    def __init__(
        self, backbone: nn.Module, pool: nn.Module, head: nn.Module, classifier: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = pool
        self.head = head
        self.classifier = classifier  # optional ImageNet FC read from the same feature map (scene tags)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's N x C x h x w feature map (used by the class-activation explanation)."""
        return self.backbone(x)

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, L2-normalised N x C descriptor."""
        return LF.l2n(self.pool(self.backbone(x)).flatten(1))

    def descriptor_and_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`descriptor` plus the average-pooled N x C features (the classifier's input), one backbone run."""
        fmap = self.backbone(x)
        return LF.l2n(self.pool(fmap).flatten(1)), LF.avg(fmap).flatten(1)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """ImageNet logits from average-pooled features (linear, so pooled features may be averaged first)."""
        if self.classifier is None:
            raise RuntimeError("this network was built without its ImageNet classifier")
        return self.classifier(pooled)

    def project(self, d: torch.Tensor) -> torch.Tensor:
        """Head + L2: pooled descriptors to embeddings."""
        return LF.l2n(self.head(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.descriptor(x))
