"""The manifest CSV: the one row shape that gallery imports and offline evaluation both read.

Columns: ``path,kind,landmark_id,landmark_name,city,country,lat,lon,split`` and an optional ``notes`` (paths
relative to the manifest; kind ``landmark`` | ``non_landmark`` | ``unknown_landmark``, a landmark the gallery does
not know: the operator's landmark-like negatives in train rows, photos that must get no album in test rows).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from shared.recognition.bundle import LandmarkInfo

REQUIRED_COLUMNS = ("path", "kind", "landmark_id", "landmark_name", "city", "country", "lat", "lon", "split")
# A non-landmark row whose (optional) ``notes`` column says this shows a landmark the gallery does not know.
UNKNOWN_LANDMARK_NOTE = "unknown landmark"
# The kind of a row that shows a landmark the gallery does not know, on purpose: in train rows the operator's
# landmark-like negatives (they calibrate the open-set score), in test rows photos that must get no album.
UNKNOWN_LANDMARK_KIND = "unknown_landmark"
KINDS = ("landmark", "non_landmark", UNKNOWN_LANDMARK_KIND)


@dataclass(frozen=True)
class EvalRow:
    path: Path
    kind: str  # landmark | non_landmark
    landmark: str | None  # slug, None for non-landmarks
    name: str
    city: str
    country: str
    lat: float | None
    lon: float | None
    split: str  # train | test
    _: KW_ONLY  # subclasses (gallery rows) add positional fields of their own after ``split``
    notes: str = ""
    held_out: str | None = None  # a landmark held out of the gallery (shared.evaluation.open_set): unknown

    @property
    def is_landmark(self) -> bool:
        return self.kind == "landmark"

    @property
    def is_unknown_landmark(self) -> bool:
        """A landmark the gallery does not know: held out, or so marked in the manifest's notes."""
        return not self.is_landmark and (
            self.kind == UNKNOWN_LANDMARK_KIND
            or self.held_out is not None
            or UNKNOWN_LANDMARK_NOTE in self.notes.lower()
        )


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_eval_manifest(csv_path: Path, *, limit: int | None = None) -> list[EvalRow]:
    """Rows of the manifest; ``limit`` keeps every n-th row so a quick run still covers all classes and splits."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path}: missing columns {', '.join(missing)}")
        rows = [
            EvalRow(
                path=(csv_path.parent / r["path"]).resolve(),
                kind=r["kind"].strip(),
                landmark=r["landmark_id"].strip() if r["kind"].strip() == "landmark" else None,
                name=r["landmark_name"],
                city=r["city"],
                country=r["country"],
                lat=_float(r["lat"]),
                lon=_float(r["lon"]),
                split=r["split"].strip(),
                notes=r.get("notes") or "",
            )
            for r in reader
        ]
    bad = {r.kind for r in rows} - set(KINDS)
    if bad:
        raise ValueError(f"{csv_path}: unknown kind(s) {sorted(bad)}")
    if limit and limit < len(rows):
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


def landmarks_from_rows(rows: Sequence[EvalRow]) -> tuple[LandmarkInfo, ...]:
    """One :class:`LandmarkInfo` per landmark slug, ids 1..N in slug order (stable across runs)."""
    first: dict[str, EvalRow] = {}
    for r in rows:
        if r.landmark and r.landmark not in first:
            first[r.landmark] = r
    return tuple(
        LandmarkInfo(i, slug, r.name, r.city, r.country, r.lat, r.lon)
        for i, (slug, r) in enumerate(sorted(first.items()), start=1)
    )
