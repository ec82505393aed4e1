"""The retrieval network assembled from parts: backbone -> pool -> L2 -> head -> L2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from shared.model import functional as LF
from shared.model.masking import PaddingMask, Region


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

    def descriptor(self, x: torch.Tensor, regions: Sequence[Region] | None = None) -> torch.Tensor:
        """Pooled, L2-normalised N x C descriptor (float32 whatever the backbone's precision).

        ``regions``: each photo's (top, left, height, width) when ``x`` is a letterboxed batch; the padding then
        changes no descriptor (:mod:`shared.model.masking`)."""
        fmap, mask = self._feature_map(x, regions)
        return LF.l2n(self.pool(fmap, mask).flatten(1))

    def descriptor_and_pooled(
        self, x: torch.Tensor, regions: Sequence[Region] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`descriptor` plus the average-pooled N x C features (the classifier's input), one backbone run."""
        fmap, mask = self._feature_map(x, regions)
        return LF.l2n(self.pool(fmap, mask).flatten(1)), LF.avg(fmap, mask).flatten(1)

    def _feature_map(
        self, x: torch.Tensor, regions: Sequence[Region] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The backbone's feature map in float32 (pooling powers overflow half precision) and, for a
        letterboxed batch, the mask of each photo's cells in it."""
        if regions is None:
            return self.backbone(x).float(), None
        padding = PaddingMask.attach(self.backbone)
        with padding.active(regions, (x.shape[-2], x.shape[-1])):
            fmap = self.backbone(x).float()
            return fmap, padding.mask_like(fmap)

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
