"""Embedding heads: FC + BatchNorm as in the landmark-retrieval papers, or identity without a trained head."""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingHead(nn.Module):
    """Project pooled features to the embedding dim (FC + BatchNorm); the network L2-normalises after it."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


def build_head(in_dim: int, state_dict: dict[str, torch.Tensor] | None) -> tuple[nn.Module, int]:
    """An :class:`EmbeddingHead` shaped by ``state_dict``, or ``nn.Identity`` when no head was trained.

    Returns the head and its output dim.
    """
    if not state_dict:
        return nn.Identity(), in_dim
    out_dim, fc_in = state_dict["fc.weight"].shape
    if fc_in != in_dim:
        raise ValueError(f"head expects {fc_in}-dim features but the backbone gives {in_dim}")
    head = EmbeddingHead(in_dim, out_dim)
    head.load_state_dict(state_dict)
    return head, out_dim
