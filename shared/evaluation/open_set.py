"""The open-set evaluation protocol: landmarks the gallery does not know, and what the decision does with them.

A real gallery covers a small share of the world's landmarks, so most landmark-like uploads show a place it does
not know, and they must get no album. The protocol makes such photos from a labelled corpus: ``K`` landmarks are
held out (:func:`choose_holdout`), their train rows leave the gallery entirely and their test rows become
unknown-landmark photos (:func:`apply_holdout`), beside any row the manifest's ``notes`` marks "unknown
landmark". :func:`open_set_metrics` then reports, apart from everyday non-landmarks:

- ``unknown_landmark_rejection``: unknown-landmark photos given no album;
- ``everyday_rejection``: the other non-landmark photos given no album;
- ``known_accuracy`` / ``known_wrong``: the known landmarks' photos given the right / a wrong album;
- an operating curve: known accuracy if the acceptance bar were raised until 90 / 95 / 99 % of the unknown
  photos are turned away, and the AUROC between correctly matched known photos and unknown ones, both on the
  acceptance slack (the decision's score minus the threshold it had to pass; with an open-set score, the AUROC
  ranks by that score). The curve places the bar on the test photos themselves: it shows how separable they
  are, not what a calibrated model achieves.

:func:`summarize` gives the mean and the spread over several seeded splits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import rankdata

from shared.recognition.decision import METHOD_GEO, RecognitionResult, Thresholds
from shared.recognition.open_set import OpenSetModel

if TYPE_CHECKING:
    from shared.gallery.manifest import EvalRow

CURVE_REJECTIONS = (0.90, 0.95, 0.99)
SUMMARY_KEYS = (
    "unknown_landmark_rejection",
    "everyday_rejection",
    "known_accuracy",
    "known_wrong",
    "known_wrong_share",
    "auroc",
    *(f"known_accuracy_at_{round(100 * r)}" for r in CURVE_REJECTIONS),
)


def landmark_slugs(rows: Sequence[EvalRow]) -> list[str]:
    return sorted({r.landmark for r in rows if r.landmark})


def choose_holdout(rows: Sequence[EvalRow], count: int, seed: int) -> tuple[str, ...]:
    """``count`` landmarks drawn with ``seed`` (the same rows and seed always give the same ones)."""
    slugs = landmark_slugs(rows)
    if not 0 < count < len(slugs):
        raise ValueError(f"can hold out 1 to {len(slugs) - 1} of {len(slugs)} landmarks, not {count}")
    picked = np.random.default_rng(seed).choice(len(slugs), size=count, replace=False)
    return tuple(sorted(slugs[i] for i in picked))


def holdout_splits(
    rows: Sequence[EvalRow], *, landmarks: Sequence[str] = (), count: int = 0, seed: int = 0, repeats: int = 1
) -> list[tuple[str, ...]]:
    """The held-out landmarks of each split: the named ones (one split), or ``count`` drawn with seeds ``seed``,
    ``seed + 1``, ... for ``repeats`` splits; ``[()]`` (one split, nothing held out) when neither is asked."""
    if landmarks:
        return [tuple(sorted(set(landmarks)))]
    if count:
        return [choose_holdout(rows, count, seed + i) for i in range(max(1, repeats))]
    return [()]


def apply_holdout(rows: Sequence[EvalRow], held: Sequence[str]) -> tuple[list[EvalRow], list[int]]:
    """The rows without the held-out landmarks' train rows, their test rows turned into unknown-landmark photos
    (non-landmark rows that remember the landmark), and the kept rows' indices in ``rows``."""
    held_set = set(held)
    unknown = held_set - set(landmark_slugs(rows))
    if unknown:
        raise ValueError(f"not landmarks of this manifest: {', '.join(sorted(unknown))}")
    out: list[EvalRow] = []
    kept: list[int] = []
    for i, row in enumerate(rows):
        if row.landmark in held_set:
            if row.split == "train":
                continue
            row = dataclasses.replace(row, kind="non_landmark", landmark=None, held_out=row.landmark)
        out.append(row)
        kept.append(i)
    return out, kept


def acceptance_slack(
    results: Sequence[RecognitionResult], thresholds: Thresholds, open_set: OpenSetModel | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per photo: its best candidate (the match, or the best rejected candidate; -1 when there was none) and how
    far the decision's score is above the threshold that candidate faced (negative when it fell short); with an
    open-set score, the smaller of that and the open-set score's distance to its own threshold."""
    candidates = np.full(len(results), -1, dtype=np.int64)
    slack = np.full(len(results), -np.inf)
    for i, r in enumerate(results):
        candidate = r.landmark_id if r.landmark_id is not None else (r.runner_up[0] if r.runner_up else None)
        if candidate is None or not np.isfinite(r.score):
            continue
        bar = thresholds.geo if r.method == METHOD_GEO else thresholds.verification_for(int(candidate))
        candidates[i] = int(candidate)
        slack[i] = float(r.score) - bar
        if open_set is not None and r.open_set_score is not None:
            slack[i] = min(slack[i], r.open_set_score - open_set.threshold)
    return candidates, slack


def open_set_scores(results: Sequence[RecognitionResult]) -> np.ndarray:
    """Each photo's open-set score (NaN where the decision computed none)."""
    return np.array([np.nan if r.open_set_score is None else r.open_set_score for r in results], dtype=np.float64)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """Probability that a positive scores above a negative (ties count half); None without both."""
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if not len(pos) or not len(neg):
        return None
    ranks = rankdata(np.concatenate([pos, neg]), method="average")
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def open_set_metrics(
    rows: Sequence[EvalRow],
    predicted: Sequence[str | None],
    results: Sequence[RecognitionResult],
    thresholds: Thresholds,
    landmark_ids: dict[str, int],
    open_set: OpenSetModel | None = None,
) -> dict[str, Any]:
    """Open-set figures of decided test rows (see the module docstring). ``landmark_ids``: slug -> bundle id;
    ``open_set``: the bundle's open-set score, whose own slack counts in the curve."""
    known = np.array([r.is_landmark for r in rows])
    unknown = np.array([r.is_unknown_landmark for r in rows])
    everyday = ~known & ~unknown
    accepted = np.array([p is not None for p in predicted])
    right = np.array([r.is_landmark and p == r.landmark for r, p in zip(rows, predicted, strict=True)])
    candidates, slack = acceptance_slack(results, thresholds, open_set)
    truth = np.array([landmark_ids.get(r.landmark or "", -2) for r in rows])
    best_is_right = known & (candidates == truth)
    ranking = slack
    if open_set is not None:  # rank by the open-set score itself: the rule's slack is on another scale
        scores = open_set_scores(results)
        ranking = np.where(np.isfinite(scores), scores - open_set.threshold, slack)
    out: dict[str, Any] = {
        "unknown_landmark_rejection": _share(~accepted[unknown]),
        "everyday_rejection": _share(~accepted[everyday]),
        "known_accuracy": _share(right[known]),
        "known_wrong": int((accepted & ~right & known).sum()),
        "known_wrong_share": _share((accepted & ~right)[known]),
        "auroc": auroc(ranking[best_is_right & np.isfinite(ranking)], _finite(ranking[unknown])),
        "counts": {
            "known": int(known.sum()),
            "unknown_landmark": int(unknown.sum()),
            "everyday": int(everyday.sum()),
        },
    }
    # The bar raised until a share of the unknown photos is turned away; rejected photos stay rejected.
    effective = np.where(accepted, slack, -np.inf)
    for share in CURVE_REJECTIONS:
        key = f"known_accuracy_at_{round(100 * share)}"
        if not unknown.any():
            out[key] = None
            continue
        bar = float(np.quantile(effective[unknown], share, method="higher"))
        out[key] = _share((right & (effective > bar))[known])
    return out


def summarize(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, min and max of each open-set figure over several splits (None figures left out)."""
    out: dict[str, Any] = {"splits": len(reports), "mean": {}, "min": {}, "max": {}}
    for key in SUMMARY_KEYS:
        values = [r[key] for r in reports if r.get(key) is not None]
        if values:
            out["mean"][key] = float(np.mean(values))
            out["min"][key] = float(np.min(values))
            out["max"][key] = float(np.max(values))
    return out


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if len(mask) else None


def _finite(values: np.ndarray) -> np.ndarray:
    """Unknown photos without any candidate never pass: they rank below every known photo."""
    return np.where(np.isfinite(values), values, -1e9)
