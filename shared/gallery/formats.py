"""Readers of the three gallery layouts, all giving :class:`GalleryRow` for :func:`shared.gallery.catalog.import_rows`.

- a manifest CSV as for `landmarks eval`, with an optional ``reference`` column (1/true);
- a folder tree ``<slug>/<photos>`` with a CSV of landmark metadata (``slug,name,city,country,lat,lon``);
  photos under ``<slug>/references/`` are hand-picked references, ``_negatives/`` holds non-landmark photos;
- the Google Landmarks Dataset v2 layout: ``train.csv`` (``id,url,landmark_id``), images under
  ``train/<a>/<b>/<c>/<id>.jpg`` and ``train_label_to_category.csv`` (``landmark_id,category``). GLDv2 has no
  coordinates, and most people download only some of its shards: rows whose image is absent are skipped.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from shared.gallery.manifest import EvalRow, read_eval_manifest

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".tif", ".tiff", ".bmp", ".avif"})
REFERENCES_DIR = "references"
NEGATIVES_DIR = "_negatives"
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "t"})
LANDMARK_COLUMNS = ("slug", "name")  # required; city, country, lat, lon are optional


@dataclass(frozen=True)
class GalleryRow(EvalRow):
    """A manifest row that may be a hand-picked reference photo of its landmark."""

    reference: bool = False


@dataclass
class ReadResult:
    rows: list[GalleryRow]
    skipped: list[str] = field(default_factory=list)  # what was left out, and why (one line each)


def truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in TRUE_WORDS


def slugify(text: str) -> str:
    """ASCII, lower case, words joined by ``_`` (the form of the landmark slugs in the manifests)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_manifest(csv_path: Path) -> ReadResult:
    """The manifest's rows; a ``reference`` column (1/true) marks hand-picked reference photos."""
    rows = read_eval_manifest(csv_path)
    with open(csv_path, newline="") as f:
        flags = [truthy(r.get("reference")) for r in csv.DictReader(f)]
    return ReadResult([GalleryRow(**vars(row), reference=flag) for row, flag in zip(rows, flags, strict=True)])


def read_landmarks_csv(csv_path: Path) -> dict[str, dict[str, str]]:
    """``slug -> {name, city, country, lat, lon}`` from the landmark metadata CSV of a folder tree."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in LANDMARK_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path}: missing columns {', '.join(missing)}")
        return {r["slug"].strip(): r for r in reader if r["slug"].strip()}


def _images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def read_folder(root: Path, landmarks_csv: Path) -> ReadResult:
    """Rows of a ``<slug>/<photos>`` tree; every landmark folder needs a row in ``landmarks_csv``."""
    root = Path(root).resolve()
    meta = read_landmarks_csv(landmarks_csv)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name != NEGATIVES_DIR and p.name not in meta]
    if unknown:
        raise ValueError(f"{landmarks_csv}: no metadata for landmark folder(s) {', '.join(unknown[:10])}")
    result = ReadResult([])
    for folder in folders:
        images = _images(folder)
        if not images:
            result.skipped.append(f"{folder.name}/: no images")
        for path in images:
            if folder.name == NEGATIVES_DIR:
                result.rows.append(GalleryRow(path, "non_landmark", None, "", "", "", None, None, "train"))
                continue
            m = meta[folder.name]
            result.rows.append(
                GalleryRow(
                    path=path,
                    kind="landmark",
                    landmark=folder.name,
                    name=(m.get("name") or folder.name).strip(),
                    city=(m.get("city") or "").strip(),
                    country=(m.get("country") or "").strip(),
                    lat=_float(m.get("lat")),
                    lon=_float(m.get("lon")),
                    split="train",
                    reference=REFERENCES_DIR in path.relative_to(folder).parts[:-1],
                )
            )
    without_folder = sorted(set(meta) - {p.name for p in folders})
    result.skipped.extend(f"{slug}: in {landmarks_csv.name} but has no folder" for slug in without_folder)
    return result


def category_name(category: str) -> str:
    """A readable name from a Wikimedia category URL: ``.../Category:Pont_du_Gard`` -> ``Pont du Gard``."""
    tail = unquote(category.strip().rstrip("/").rsplit("/", 1)[-1])
    tail = tail.split(":", 1)[1] if tail.lower().startswith("category:") else tail
    return " ".join(tail.replace("_", " ").split())


def gldv2_slug(landmark_id: str) -> str:
    """Stable across re-imports and unique: the dataset's own id (names may repeat or change)."""
    return f"gldv2_{landmark_id}"


def gldv2_image_path(root: Path, image_id: str) -> Path:
    return root / "train" / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"


def read_gldv2(root: Path) -> ReadResult:
    """Rows of a (partly downloaded) GLDv2 train set; images not on disk are skipped and counted."""
    root = Path(root).resolve()
    names: dict[str, str] = {}
    categories = root / "train_label_to_category.csv"
    if categories.is_file():
        with open(categories, newline="", encoding="utf-8") as f:
            names = {r["landmark_id"].strip(): category_name(r["category"]) for r in csv.DictReader(f)}
    train = root / "train.csv"
    if not train.is_file():
        raise ValueError(f"{root}: no train.csv (GLDv2 layout: train.csv, train/a/b/c/<id>.jpg)")
    result = ReadResult([])
    missing = 0
    with open(train, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"id", "landmark_id"} <= set(reader.fieldnames or []):
            raise ValueError(f"{train}: missing columns id, landmark_id")
        for r in reader:
            image_id, landmark_id = r["id"].strip(), r["landmark_id"].strip()
            path = gldv2_image_path(root, image_id) if len(image_id) >= 3 else root / "train" / image_id
            if not path.is_file():
                missing += 1
                continue
            name = names.get(landmark_id) or f"GLDv2 landmark {landmark_id}"
            result.rows.append(GalleryRow(path, "landmark", gldv2_slug(landmark_id), name, "", "", None, None, "train"))
    if missing:
        result.skipped.append(f"{missing} image(s) listed in train.csv are not under {root / 'train'}")
    return result
