"""The three gallery layouts read from small trees the tests draw themselves."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from shared.gallery.formats import (
    GalleryRow,
    category_name,
    gldv2_image_path,
    read_folder,
    read_gldv2,
    read_manifest,
    slugify,
)

MANIFEST_FIELDS = ["path", "kind", "landmark_id", "landmark_name", "city", "country", "lat", "lon", "split"]


def _jpeg(path: Path, colour: tuple[int, int, int] = (120, 160, 200)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), colour).save(path, "JPEG")
    return path


def _csv(path: Path, fields: list[str], rows: list[dict[str, object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_manifest_reference_column_marks_references(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "n.jpg"):
        _jpeg(tmp_path / name)
    base = {"landmark_id": "tower", "landmark_name": "Tower", "city": "X", "country": "Y", "lat": 1, "lon": 2}
    rows = [
        {**base, "path": "a.jpg", "kind": "landmark", "split": "train", "reference": "1"},
        {**base, "path": "b.jpg", "kind": "landmark", "split": "train", "reference": ""},
        {"path": "n.jpg", "kind": "non_landmark", "split": "train", "reference": "true"},
    ]
    result = read_manifest(_csv(tmp_path / "m.csv", [*MANIFEST_FIELDS, "reference"], rows))
    assert [(r.path.name, r.reference) for r in result.rows] == [("a.jpg", True), ("b.jpg", False), ("n.jpg", True)]
    assert result.rows[0].landmark == "tower" and result.rows[2].landmark is None
    assert all(isinstance(r, GalleryRow) for r in result.rows)


def test_manifest_without_reference_column(tmp_path: Path) -> None:
    _jpeg(tmp_path / "a.jpg")
    row = {"path": "a.jpg", "kind": "landmark", "landmark_id": "t", "landmark_name": "T", "split": "train"}
    result = read_manifest(_csv(tmp_path / "m.csv", MANIFEST_FIELDS, [row]))
    assert [r.reference for r in result.rows] == [False]


def test_folder_tree_with_references_and_negatives(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _jpeg(root / "pont_du_gard" / "1.jpg")
    _jpeg(root / "pont_du_gard" / "2.JPG")
    _jpeg(root / "pont_du_gard" / "references" / "r.jpg")
    (root / "pont_du_gard" / "notes.txt").write_text("not a photo")
    _jpeg(root / "_negatives" / "cat.jpg")
    meta = _csv(
        tmp_path / "landmarks.csv",
        ["slug", "name", "city", "country", "lat", "lon"],
        [
            {"slug": "pont_du_gard", "name": "Pont du Gard", "city": "Vers", "country": "France", "lat": 43.947,
             "lon": 4.535},
            {"slug": "not_here", "name": "Not Here", "city": "", "country": "", "lat": "", "lon": ""},
        ],
    )  # fmt: skip
    result = read_folder(root, meta)
    by_name = {r.path.name: r for r in result.rows}
    assert set(by_name) == {"1.jpg", "2.JPG", "r.jpg", "cat.jpg"}
    assert by_name["r.jpg"].reference and not by_name["1.jpg"].reference
    assert by_name["1.jpg"].name == "Pont du Gard" and by_name["1.jpg"].lat == pytest.approx(43.947)
    assert by_name["cat.jpg"].kind == "non_landmark" and by_name["cat.jpg"].landmark is None
    assert any("not_here" in line for line in result.skipped)


def test_folder_without_metadata_is_an_error(tmp_path: Path) -> None:
    _jpeg(tmp_path / "tree" / "mystery" / "1.jpg")
    meta = _csv(tmp_path / "landmarks.csv", ["slug", "name"], [])
    with pytest.raises(ValueError, match="mystery"):
        read_folder(tmp_path / "tree", meta)


def test_category_names_from_wikimedia_urls() -> None:
    assert category_name("http://commons.wikimedia.org/wiki/Category:Pont_du_Gard") == "Pont du Gard"
    assert category_name("https://commons.wikimedia.org/wiki/Category:Haleakal%C4%81_National_Park") == (
        "Haleakalā National Park"
    )
    assert category_name("Category:Big_Ben/") == "Big Ben"


def test_slugify_is_ascii_snake_case() -> None:
    assert slugify("Chichén Itzá (El Castillo)") == "chichen_itza_el_castillo"


def test_gldv2_layout_skips_images_not_downloaded(tmp_path: Path) -> None:
    ids = ["abc123", "abd999", "fff000"]
    _jpeg(gldv2_image_path(tmp_path, ids[0]))
    _jpeg(gldv2_image_path(tmp_path, ids[1]))
    assert gldv2_image_path(tmp_path, "abc123") == tmp_path / "train" / "a" / "b" / "c" / "abc123.jpg"
    _csv(
        tmp_path / "train.csv",
        ["id", "url", "landmark_id"],
        [{"id": i, "url": f"http://x/{i}", "landmark_id": lid} for i, lid in zip(ids, [7, 8, 7], strict=True)],
    )
    _csv(
        tmp_path / "train_label_to_category.csv",
        ["landmark_id", "category"],
        [{"landmark_id": 7, "category": "http://commons.wikimedia.org/wiki/Category:Pont_du_Gard"}],
    )
    result = read_gldv2(tmp_path)
    assert [(r.path.stem, r.landmark, r.name) for r in result.rows] == [
        ("abc123", "gldv2_7", "Pont du Gard"),
        ("abd999", "gldv2_8", "GLDv2 landmark 8"),
    ]
    assert all(r.lat is None and r.lon is None and r.kind == "landmark" for r in result.rows)
    assert result.skipped == [f"1 image(s) listed in train.csv are not under {tmp_path.resolve() / 'train'}"]


def test_gldv2_without_train_csv(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train.csv"):
        read_gldv2(tmp_path)
