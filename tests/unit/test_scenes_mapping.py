"""The scene mapping table: only real ImageNet-1k classes, each named as in torchvision's list, once."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from shared.scenes.mapping import DEFAULT_MAPPING, LABEL_TITLES, NUM_CLASSES, MappingError, load_mapping, read_mapping


def _imagenet_names() -> list[str]:
    torchvision = pytest.importorskip("torchvision")
    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def test_every_index_is_a_real_class_with_its_name() -> None:
    names = _imagenet_names()
    assert len(names) == NUM_CLASSES
    with open(DEFAULT_MAPPING, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows, "empty mapping"
    for r in rows:
        i = int(r["index"])
        assert 0 <= i < NUM_CLASSES, r
        assert names[i] == r["imagenet_name"], f"class {i} is {names[i]!r}, the table says {r['imagenet_name']!r}"


def test_labels_have_titles_and_expected_classes() -> None:
    m = load_mapping()
    assert set(m.labels) == set(LABEL_TITLES)
    names = _imagenet_names()
    for label, examples in {
        "architecture": ("palace", "church", "castle", "mosque", "stupa", "triumphal arch"),
        "mountains": ("alp", "volcano", "valley"),
        "beach_sea": ("seashore",),
        "lake_river": ("lakeside",),
        "food": ("pizza", "plate", "cheeseburger"),
        "pets": ("tabby", "golden retriever"),
        "animals": ("tree frog", "goldfish"),
    }.items():
        have = {names[i] for i in m.classes_of(label)}
        assert set(examples) <= have, (label, set(examples) - have)


def test_matrix_sums_classes_into_labels() -> None:
    m = load_mapping()
    mat = m.matrix()
    assert mat.shape == (NUM_CLASSES, len(m.labels))
    assert set(np.unique(mat.sum(axis=1))) <= {0.0, 1.0}  # a class is in at most one label
    assert int(mat.sum()) == int((m.class_label >= 0).sum())


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("index,imagenet_name,label\n1000,toilet tissue,indoor\n", "outside 0..999"),
        ("index,imagenet_name,label\n-1,x,indoor\n", "outside 0..999"),
        ("index,imagenet_name,label\n3,tiger shark,animals\n3,tiger shark,animals\n", "listed twice"),
        ("index,imagenet_name,label\nx,tiger shark,animals\n", "not an integer"),
        ("index,name\n3,tiger shark\n", "columns"),
    ],
)
def test_malformed_tables_are_refused(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "mapping.csv"
    path.write_text(body)
    with pytest.raises(MappingError, match=match):
        read_mapping(path)
