"""Classification losses for training the embedding head (torch; used only by the training package).

- ``center``: softmax over cosine logits (scale ``s``) plus center loss (Wen et al. 2016), the seeds' best; the
  center term pulls each landmark's embeddings towards a learned center. The "no landmark" class gets NO center
  term: non-landmark photos have nothing in common to be pulled together, only the softmax pushes them apart.
- ``arcface`` (additive angular margin, Deng et al.) and ``cosface`` (additive cosine margin, Wang et al.), with
  s=30, m=0.3 as in the Google Landmark Recognition winners.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("center", "arcface", "cosface")


class CosineClassifier(nn.Module):
    """Logits ``s * cos(embedding, class weight)``; with a margin on the target class for ArcFace / CosFace."""

    def __init__(self, dim: int, num_classes: int, *, kind: str = "center", s: float = 30.0, m: float = 0.3) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; known: {', '.join(LOSSES)}")
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.weight, std=0.01)
        self.kind, self.s, self.m = kind, s, m

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings), F.normalize(self.weight))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; the margin applies only when training labels are given."""
        cos = self.cosine(embeddings)
        if labels is None or self.kind == "center":
            return self.s * cos
        target = cos.gather(1, labels[:, None])
        if self.kind == "arcface":
            theta = torch.acos(target.clamp(-1 + 1e-7, 1 - 1e-7))
            shifted = torch.cos(theta + self.m)
        else:
            shifted = target - self.m
        return self.s * cos.scatter(1, labels[:, None], shifted)


class CenterLoss(nn.Module):
    """Half the mean squared distance of embeddings to their class center, ignoring ``ignore_index``."""

    def __init__(self, num_classes: int, dim: int, *, ignore_index: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(num_classes, dim))
        self.ignore_index = ignore_index

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        keep = labels != self.ignore_index
        if not bool(keep.any()):
            return embeddings.sum() * 0.0
        diff = embeddings[keep] - self.centers[labels[keep]]
        return 0.5 * diff.pow(2).sum(dim=1).mean()


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
