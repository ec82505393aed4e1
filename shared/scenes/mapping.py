"""The scene mapping: ImageNet-1k class index -> user-facing scene label (several fine classes per label).

``mapping.csv`` (``index,imagenet_name,label``) was generated from torchvision's ImageNet class names and curated
by hand; classes not listed (tools, clothes, gadgets, ...) belong to no scene. The name column is there for review
and is checked against the class list by the tests.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

DEFAULT_MAPPING = Path(__file__).with_name("mapping.csv")
NUM_CLASSES = 1000

# Album titles for the labels (the label slug is what is stored).
LABEL_TITLES: dict[str, str] = {
    "animals": "Animals",
    "architecture": "Architecture",
    "beach_sea": "Beach & sea",
    "boats": "Boats",
    "bridge": "Bridges",
    "city_street": "City streets",
    "food": "Food & drink",
    "indoor": "Indoors",
    "lake_river": "Lakes & rivers",
    "mountains": "Mountains",
    "pets": "Pets",
    "plants": "Plants & gardens",
    "restaurant": "Restaurants & shops",
    "snow": "Snow",
    "sports": "Sports",
    "vehicles": "Vehicles",
}


class MappingError(ValueError):
    """The mapping table is malformed (bad index, duplicate class, unknown column)."""


@dataclass(frozen=True, eq=False)
class SceneMapping:
    labels: tuple[str, ...]  # sorted label slugs: the columns of :meth:`matrix`
    class_label: np.ndarray  # NUM_CLASSES ints: column in ``labels``, -1 for classes in no scene
    names: dict[int, str]  # class index -> ImageNet name, as written in the table
    digest: str  # sha256 of the table, recorded with the model so tags stay traceable

    def matrix(self) -> np.ndarray:
        """NUM_CLASSES x L one-hot matrix: class probabilities @ matrix = per-label probability mass."""
        m = np.zeros((NUM_CLASSES, len(self.labels)), dtype=np.float32)
        mapped = self.class_label >= 0
        m[np.flatnonzero(mapped), self.class_label[mapped]] = 1.0
        return m

    def classes_of(self, label: str) -> list[int]:
        return np.flatnonzero(self.class_label == self.labels.index(label)).tolist()


def read_mapping(path: Path) -> SceneMapping:
    """Parse a mapping table; raises :class:`MappingError` on an index outside 0..999 or a class listed twice."""
    text = Path(path).read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or set(rows[0]) != {"index", "imagenet_name", "label"}:
        raise MappingError(f"{path}: columns must be index,imagenet_name,label")
    by_index: dict[int, tuple[str, str]] = {}
    for n, r in enumerate(rows, start=2):
        try:
            i = int(r["index"])
        except ValueError:
            raise MappingError(f"{path}:{n}: index {r['index']!r} is not an integer") from None
        if not 0 <= i < NUM_CLASSES:
            raise MappingError(f"{path}:{n}: index {i} outside 0..{NUM_CLASSES - 1}")
        if i in by_index:
            raise MappingError(f"{path}:{n}: class {i} listed twice")
        label = r["label"].strip()
        if not label:
            raise MappingError(f"{path}:{n}: empty label")
        by_index[i] = (r["imagenet_name"], label)
    labels = tuple(sorted({label for _, label in by_index.values()}))
    column = {label: j for j, label in enumerate(labels)}
    class_label = np.full(NUM_CLASSES, -1, dtype=np.int64)
    for i, (_, label) in by_index.items():
        class_label[i] = column[label]
    return SceneMapping(
        labels=labels,
        class_label=class_label,
        names={i: name for i, (name, _) in by_index.items()},
        digest=hashlib.sha256(text.encode()).hexdigest(),
    )


@cache
def load_mapping(path: Path | None = None) -> SceneMapping:
    """The mapping at ``path`` (default: the packaged table), parsed once per process."""
    return read_mapping(path or DEFAULT_MAPPING)
