"""Embedding heads: FC + BatchNorm as in the landmark-retrieval papers, or identity without a trained head.

A trained head may keep the raw pooled feature beside its projection (``raw_weight`` in its state): the
embedding is then ``[sqrt(w) * raw, sqrt(1 - w) * trained]`` (each part L2-normalised), so an inner product is
``w * raw cosine + (1 - w) * trained cosine``. On the development corpus the fused score tells landmarks apart
better than either part (out-of-fold: more right answers at every wrong-answer count), because the head, trained
on a thousand photos, sharpens the known landmarks while the ImageNet feature keeps what the head never saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RAW_WEIGHT_KEY = "raw_weight"


class EmbeddingHead(nn.Module):
    """Project pooled features to the embedding dim (FC + BatchNorm); the network L2-normalises after it."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


class FusedHead(nn.Module):
    """The raw feature and a trained head's projection side by side, weighted ``raw_weight`` : 1 - ``raw_weight``."""

    def __init__(self, head: EmbeddingHead, raw_weight: float) -> None:
        super().__init__()
        if not 0.0 < raw_weight < 1.0:
            raise ValueError(f"raw_weight must lie strictly between 0 and 1, got {raw_weight}")
        self.head = head
        self.raw_weight = float(raw_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = F.normalize(x) * self.raw_weight**0.5
        trained = F.normalize(self.head(x)) * (1.0 - self.raw_weight) ** 0.5
        return torch.cat([raw, trained], dim=1)


def with_raw_weight(state_dict: dict[str, Any], raw_weight: float) -> dict[str, Any]:
    """A head state that :func:`build_head` turns into a :class:`FusedHead` (``raw_weight`` 0: the plain head)."""
    plain = {k: v for k, v in state_dict.items() if k != RAW_WEIGHT_KEY}
    return {**plain, RAW_WEIGHT_KEY: torch.tensor(float(raw_weight))} if raw_weight > 0 else plain


def head_output_dim(in_dim: int, state_dict: dict[str, Any] | None) -> int:
    """The embedding dim a head state gives (without building it)."""
    if not state_dict:
        return in_dim
    out_dim = int(state_dict["fc.weight"].shape[0])
    return out_dim + in_dim if RAW_WEIGHT_KEY in state_dict else out_dim


def linear_head_state(weight: np.ndarray, bias: np.ndarray) -> dict[str, torch.Tensor]:
    """An :class:`EmbeddingHead` state computing ``x @ weight.T + bias`` exactly (its batch norm an identity):
    how a bundle carries a fixed linear map such as the gallery's whitening."""
    w = torch.as_tensor(np.asarray(weight, dtype=np.float32))
    out_dim = w.shape[0]
    bn = nn.BatchNorm1d(out_dim)
    return {
        "fc.weight": w,
        "fc.bias": torch.as_tensor(np.asarray(bias, dtype=np.float32)),
        "bn.weight": torch.ones(out_dim),
        "bn.bias": torch.zeros(out_dim),
        "bn.running_mean": torch.zeros(out_dim),
        "bn.running_var": torch.full((out_dim,), 1.0 - bn.eps),  # (x - 0) / sqrt(var + eps) = x
        "bn.num_batches_tracked": torch.tensor(0),
    }


def project(head_state: dict[str, Any] | None, features: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """Pooled features -> L2-normalised embeddings, exactly as :class:`shared.model.Embedder` projects them."""
    x = np.asarray(features, dtype=np.float32)
    head, _ = build_head(x.shape[1], head_state)
    head.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            out.append(F.normalize(head(torch.from_numpy(x[start : start + batch_size]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, x.shape[1]), np.float32)


def build_head(in_dim: int, state_dict: dict[str, Any] | None) -> tuple[nn.Module, int]:
    """An :class:`EmbeddingHead` (or a :class:`FusedHead` around one) shaped by ``state_dict``, or
    ``nn.Identity`` when no head was trained. Returns the head and its output dim.
    """
    if not state_dict:
        return nn.Identity(), in_dim
    out_dim, fc_in = state_dict["fc.weight"].shape
    if fc_in != in_dim:
        raise ValueError(f"head expects {fc_in}-dim features but the backbone gives {in_dim}")
    head = EmbeddingHead(in_dim, out_dim)
    head.load_state_dict({k: v for k, v in state_dict.items() if k != RAW_WEIGHT_KEY})
    if RAW_WEIGHT_KEY in state_dict:
        return FusedHead(head, float(state_dict[RAW_WEIGHT_KEY])), head_output_dim(in_dim, state_dict)
    return head, out_dim
