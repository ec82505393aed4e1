"""Scene tags (architecture, mountains, food, ...) from the backbone's own ImageNet classifier, and a landmark
prior from them: numpy only; the logits come from the embedding's forward pass (``shared.model``)."""

from shared.scenes.mapping import SceneMapping, load_mapping
from shared.scenes.tagger import (
    DEFAULT_THRESHOLD,
    LANDMARK_LABELS,
    SceneConfig,
    ScenePrior,
    label_scores,
    landmark_mass,
    scene_tags,
    softmax,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "LANDMARK_LABELS",
    "SceneConfig",
    "SceneMapping",
    "ScenePrior",
    "label_scores",
    "landmark_mass",
    "load_mapping",
    "scene_tags",
    "softmax",
]
