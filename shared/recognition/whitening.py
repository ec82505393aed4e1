"""Supervised whitening of the embedding, learned from the gallery when a model is built (Radenović et al.,
"CNN image retrieval learns from BoW", ECCV 2016: "Lw").

ImageNet features spread a landmark's photos along directions that say little about which landmark it is
(lighting, season, framing) and squeeze different landmarks together along others. Lw first whitens the
within-landmark scatter (photos of one landmark pulled together; shrunk towards the identity so rare directions
are not blown up), then keeps the ``dim`` directions along which the whitened gallery and non-landmark photos
vary most. On ``../shared/data`` with 5 of 15 landmarks held out it separates right matches from unknown
landmarks better (AUROC of the open-set score 0.911 -> 0.935), which is what the open-set score needs.

The transform is affine then L2-normalised, so a bundle stores it as an embedding head
(:func:`shared.model.head.linear_head_state`) and workers apply it in the network's forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.index import l2_normalize

DEFAULT_DIM = 512
DEFAULT_SHRINK = 1.0


@dataclass(frozen=True)
class WhiteningOptions:
    """Whether and how a model build whitens: the kept dimensions and the within-landmark scatter's shrinkage."""

    dim: int = DEFAULT_DIM
    shrink: float = DEFAULT_SHRINK


def whitening_options(dim: int | None) -> WhiteningOptions | None:
    """The options a ``recognition.whitening_dim`` setting asks for (None or 0: no whitening)."""
    return WhiteningOptions(dim=dim) if dim else None


@dataclass(frozen=True, eq=False)
class Whitening:
    """x -> l2n((x - mean) @ projection)."""

    mean: np.ndarray  # D
    projection: np.ndarray  # D x d

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize((np.asarray(x, dtype=np.float64) - self.mean) @ self.projection)

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])


def learn_whitening(
    gallery: np.ndarray,
    gallery_landmarks: np.ndarray,
    non_landmarks: np.ndarray,
    *,
    dim: int = DEFAULT_DIM,
    shrink: float = DEFAULT_SHRINK,
) -> Whitening:
    """Lw from L2-normalised gallery embeddings (with their landmark ids) and non-landmark embeddings.

    ``shrink`` adds that multiple of the mean eigenvalue to the within-landmark scatter's eigenvalues before
    inverting them; ``dim`` (at most the input's) directions are kept.
    """
    g = np.asarray(gallery, dtype=np.float64)
    labels = np.asarray(gallery_landmarks)
    everything = np.concatenate([g, np.asarray(non_landmarks, dtype=np.float64)])
    mean = everything.mean(axis=0)
    within = np.concatenate([g[labels == lid] - g[labels == lid].mean(axis=0) for lid in np.unique(labels)])
    scatter = within.T @ within / max(1, len(within))
    values, vectors = np.linalg.eigh(scatter)
    values = np.maximum(values, 0.0)
    whiten = vectors / np.sqrt(values + shrink * max(values.mean(), 1e-12))
    spread = np.cov(((everything - mean) @ whiten).T)
    _, directions = np.linalg.eigh(spread)
    keep = min(dim, directions.shape[1])
    projection = whiten @ directions[:, ::-1][:, :keep]
    return Whitening(mean.astype(np.float64), projection.astype(np.float64))


def whitening_head(whitening: Whitening) -> dict:
    """The whitening as an embedding head state (the network applies it; :func:`shared.model.head.project` too)."""
    from shared.model.head import linear_head_state  # torch lives in shared.model

    projection = whitening.projection
    return linear_head_state(projection.T, -whitening.mean @ projection)
