"""Landmark-presence gate: a small discriminative classifier "is there a landmark at all?".

Logistic regression on embeddings, trained on gallery photos (positive) and known non-landmark photos
(negative), classes weighted to balance. Scoring is plain numpy (a dot product), so the decision needs no torch;
only training uses it. The gate itself (:class:`PresenceGate`) lives with the decision rule that applies it.
"""

from __future__ import annotations

import numpy as np

from shared.recognition.decision import PresenceGate

__all__ = ["PresenceGate", "train_gate"]


def train_gate(
    embeddings: np.ndarray, is_landmark: np.ndarray, *, l2: float = 1e-3, scale: float = 10.0, max_iter: int = 200
) -> PresenceGate:
    """Balanced, L2-regularised logistic regression (L-BFGS). Inputs are multiplied by ``scale`` inside so the
    unit-length rows do not need a huge weight; the returned gate works on the raw rows."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)) * scale
    y = torch.as_tensor(np.asarray(is_landmark, dtype=np.float32))
    pos, neg = float(y.sum()), float(len(y) - y.sum())
    if pos == 0 or neg == 0:
        raise ValueError("the presence gate needs both landmark and non-landmark photos")
    sample_weight = torch.where(y > 0, len(y) / (2 * pos), len(y) / (2 * neg))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y, weight=sample_weight) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return PresenceGate((w.detach() * scale).numpy().astype(np.float32), float(b.detach()))
