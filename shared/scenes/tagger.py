"""Logits -> scene tags and the landmark prior.

A label's score is the summed softmax probability of its ImageNet classes (the classifier spreads a palace photo
over palace, monastery, church, dome, ...: the sum is steadier than any one class). Tags are the labels whose score
passes the threshold. The landmark prior is the mass of the landmark-like labels (architecture, bridges,
landscapes): a photo dominated by food or a pet must score higher against a landmark to be accepted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from shared.scenes.mapping import SceneMapping

DEFAULT_THRESHOLD = 0.2
LANDMARK_LABELS: tuple[str, ...] = ("architecture", "beach_sea", "bridge", "lake_river", "mountains")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of N x C logits (float64 inside, float32 out)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def label_scores(logits: np.ndarray, mapping: SceneMapping) -> np.ndarray:
    """N x L: per label (``mapping.labels`` order), the probability mass of its classes."""
    return softmax(np.atleast_2d(logits)) @ mapping.matrix()


def scene_tags(
    logits: np.ndarray, mapping: SceneMapping, threshold: float = DEFAULT_THRESHOLD
) -> list[dict[str, float]]:
    """Per photo, ``{label: score}`` for the labels whose score is at least ``threshold``."""
    scores = label_scores(logits, mapping)
    return [{mapping.labels[j]: round(float(row[j]), 4) for j in np.flatnonzero(row >= threshold)} for row in scores]


def landmark_mass(logits: np.ndarray, mapping: SceneMapping, labels: tuple[str, ...] = LANDMARK_LABELS) -> np.ndarray:
    """Per photo, the probability mass of the landmark-like labels (0..1)."""
    scores = label_scores(logits, mapping)
    cols = [mapping.labels.index(label) for label in labels if label in mapping.labels]
    return scores[:, cols].sum(axis=1) if cols else np.zeros(len(scores), np.float32)


@dataclass(frozen=True)
class ScenePrior:
    """Raise the bar for photos with little landmark-like mass: a match needs ``score - penalty`` to pass the
    thresholds, with ``penalty = weight * (1 - min(mass / saturation, 1))``: full for a photo with no
    landmark-like mass, none from ``saturation`` up. ``weight == 0`` turns the prior off.

    ``thresholds`` (a ``Thresholds.to_dict()``) were calibrated on the penalised scores of the known
    non-landmarks, so the prior can lower the bar for architecture as well as raise it for food; without them
    the model's own thresholds are used (the prior then only rejects more).
    """

    weight: float = 0.0
    labels: tuple[str, ...] = LANDMARK_LABELS
    saturation: float = 1.0
    thresholds: dict[str, Any] | None = None

    @property
    def enabled(self) -> bool:
        return self.weight > 0

    def penalty(self, mass: np.ndarray | float) -> np.ndarray:
        m = np.asarray(mass, dtype=np.float64) / self.saturation
        return self.weight * (1.0 - np.clip(m, 0.0, 1.0))


@dataclass(frozen=True)
class SceneConfig:
    """What a model bundle records about scenes: tag threshold, prior, and the mapping it was tuned with."""

    threshold: float = DEFAULT_THRESHOLD
    prior: ScenePrior = field(default_factory=ScenePrior)
    mapping_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["prior"]["labels"] = list(self.prior.labels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SceneConfig:
        """Missing keys take the defaults, so bundles written before scene tags load unchanged."""
        data = data or {}
        prior = data.get("prior") or {}
        return cls(
            threshold=float(data.get("threshold", DEFAULT_THRESHOLD)),
            prior=ScenePrior(
                weight=float(prior.get("weight", 0.0)),
                labels=tuple(prior.get("labels") or LANDMARK_LABELS),
                saturation=float(prior.get("saturation", 1.0)),
                thresholds=prior.get("thresholds"),
            ),
            mapping_digest=data.get("mapping_digest"),
        )
