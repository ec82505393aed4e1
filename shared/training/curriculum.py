"""Curriculum learning by region: train on one region first, then add one region per stage.

A landmark's region comes from its country through a small table (or an explicit ``region`` value); photos
without a landmark (the "no landmark" class) take part in every stage, so each stage learns to reject them too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

UNKNOWN_REGION = "other"

# Coarse world regions; enough for a curriculum, not a geography reference. Keys are lower-case country names.
REGION_BY_COUNTRY: dict[str, str] = {
    **dict.fromkeys(
        [
            "austria",
            "belgium",
            "croatia",
            "czech republic",
            "czechia",
            "denmark",
            "england",
            "finland",
            "france",
            "germany",
            "greece",
            "hungary",
            "iceland",
            "ireland",
            "italy",
            "netherlands",
            "norway",
            "poland",
            "portugal",
            "romania",
            "russia",
            "scotland",
            "spain",
            "sweden",
            "switzerland",
            "united kingdom",
            "uk",
            "vatican city",
            "ukraine",
            "bulgaria",
            "serbia",
            "slovakia",
            "slovenia",
            "malta",
            "luxembourg",
            "monaco",
            "estonia",
            "latvia",
            "lithuania",
            "bosnia and herzegovina",
            "montenegro",
            "albania",
        ],
        "europe",
    ),
    **dict.fromkeys(
        [
            "turkey",
            "türkiye",
            "israel",
            "palestine",
            "jerusalem",
            "jordan",
            "lebanon",
            "syria",
            "iraq",
            "iran",
            "saudi arabia",
            "united arab emirates",
            "uae",
            "qatar",
            "oman",
            "yemen",
            "kuwait",
            "bahrain",
            "egypt",
        ],
        "middle_east",
    ),
    **dict.fromkeys(
        [
            "morocco",
            "algeria",
            "tunisia",
            "libya",
            "ethiopia",
            "kenya",
            "tanzania",
            "south africa",
            "nigeria",
            "ghana",
            "mali",
            "zimbabwe",
            "namibia",
            "botswana",
            "madagascar",
            "senegal",
            "uganda",
            "rwanda",
        ],
        "africa",
    ),
    **dict.fromkeys(
        [
            "china",
            "japan",
            "south korea",
            "korea",
            "north korea",
            "mongolia",
            "taiwan",
            "hong kong",
            "india",
            "nepal",
            "bhutan",
            "pakistan",
            "bangladesh",
            "sri lanka",
            "afghanistan",
            "uzbekistan",
            "kazakhstan",
            "cambodia",
            "thailand",
            "vietnam",
            "laos",
            "myanmar",
            "malaysia",
            "singapore",
            "indonesia",
            "philippines",
        ],
        "asia",
    ),
    **dict.fromkeys(
        [
            "united states",
            "usa",
            "united states of america",
            "canada",
            "mexico",
            "guatemala",
            "belize",
            "honduras",
            "cuba",
            "costa rica",
            "panama",
            "nicaragua",
            "el salvador",
            "dominican republic",
            "haiti",
            "jamaica",
        ],
        "north_america",
    ),
    **dict.fromkeys(
        ["brazil", "peru", "argentina", "chile", "colombia", "bolivia", "ecuador", "venezuela", "uruguay", "paraguay"],
        "south_america",
    ),
    **dict.fromkeys(["australia", "new zealand", "fiji", "papua new guinea"], "oceania"),
}


def region_of(country: str | None, region: str | None = None) -> str:
    """An explicit ``region`` wins; else the country's region from the table; else ``other``."""
    if region:
        return region.strip().lower()
    return REGION_BY_COUNTRY.get((country or "").strip().lower(), UNKNOWN_REGION)


def region_order(regions: Sequence[str], order: Sequence[str] | None = None) -> list[str]:
    """Regions in curriculum order: the given ``order`` first (unknown names ignored), then the rest by photo
    count, largest first (the biggest region gives the first stage the most to learn from)."""
    counts = Counter(r for r in regions if r)
    head = [r for r in (order or []) if r in counts]
    rest = sorted((r for r in counts if r not in head), key=lambda r: (-counts[r], r))
    return [*dict.fromkeys(head), *rest]


def curriculum_stages(regions: Sequence[str], order: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """Cumulative stages: stage k trains on the first k+1 regions of :func:`region_order`."""
    ordered = region_order(regions, order)
    return [tuple(ordered[: k + 1]) for k in range(len(ordered))]


def stage_mask(sample_regions: Sequence[str], stage: Sequence[str]) -> np.ndarray:
    """Which samples a stage trains on: those of its regions, plus every sample without a region ("")."""
    allowed = set(stage)
    return np.array([(not r) or r in allowed for r in sample_regions], dtype=bool)
