"""Measure the scene prior on an evaluation manifest: logits for every row (cached), then the decision with and
without the prior, thresholds calibrated on train rows only.

The evaluator's embedding cache holds no logits, so this keeps its own cache (embedding + logits per file, keyed
by path, size, mtime and embedder config): one forward pass gives both, as in the workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from shared.evaluation.recognition import EvalOptions, build_eval_bundle, metrics_for
from shared.evaluation.row_cache import RowCache
from shared.evaluation.scene_calibration import with_scene_prior
from shared.gallery.manifest import EvalRow
from shared.imaging.decode import Fit
from shared.index import l2_normalize
from shared.recognition.bundle import Bundle
from shared.recognition.decision import Thresholds
from shared.recognition.recognizer import Recognizer
from shared.scenes.mapping import SceneMapping, load_mapping
from shared.scenes.tagger import LANDMARK_LABELS, landmark_mass


class ClassifiesImages(Protocol):
    def embed_with_logits(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]: ...


def embed_rows_with_logits(
    rows: Sequence[EvalRow],
    embedder: ClassifiesImages,
    *,
    cache_dir: Path | None,
    min_side: int,
    fit: Fit = "short",
    max_pixels: int = 200_000_000,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeddings (N x D), logits (N x 1000) and the paths that failed to decode (zero rows for those)."""
    from shared.imaging.batches import decoded_batches, file_loader

    emb: list[np.ndarray | None] = [None] * len(rows)
    logits: list[np.ndarray | None] = [None] * len(rows)
    todo = []
    cache = RowCache(cache_dir) if cache_dir else None
    for i, r in enumerate(rows):
        cached = cache.load(r.path) if cache else None
        if cached is not None:
            emb[i], logits[i] = cached["embedding"], cached["logits"]
        else:
            todo.append(i)
    failed: list[str] = []
    done = len(rows) - len(todo)
    load = file_loader(min_side=min_side, fit=fit, max_pixels=max_pixels)
    for batch in decoded_batches([rows[i].path for i in todo], load, batch_size=batch_size):
        failed.extend(f"{rows[todo[j]].path}: {reason}" for j, reason in batch.failed)
        if batch.photos:
            e, lg = embedder.embed_with_logits(batch.images)
            for j, v, g in zip(batch.indices, e, lg, strict=True):
                i = todo[j]
                emb[i], logits[i] = v, g
                if cache:
                    cache.save(rows[i].path, embedding=v, logits=g)
        done += len(batch.indices) + len(batch.failed)
        if progress:
            progress(done, len(rows))
    dim = next((len(v) for v in emb if v is not None), 0)
    ncls = next((len(v) for v in logits if v is not None), 1000)
    e_out = np.stack([v if v is not None else np.zeros(dim, np.float32) for v in emb]).astype(np.float32)
    l_out = np.stack([v if v is not None else np.zeros(ncls, np.float32) for v in logits]).astype(np.float32)
    return e_out, l_out, failed


class _Precomputed:
    """Stands in for the network: the evaluation decides on cached embeddings."""

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise RuntimeError("this recognizer only decides on precomputed embeddings")


def predict(bundle: Bundle, embeddings: np.ndarray, masses: np.ndarray | None) -> list[str | None]:
    """Decide each embedding (no GPS) with the recognizer the workers use; ``masses`` applies the prior."""
    recognizer = Recognizer(bundle, _Precomputed())
    return [recognizer.slug(r.landmark_id) for r in recognizer.decide(l2_normalize(embeddings), None, masses)]


def _fold(path: Path, folds: int) -> int:
    return int(hashlib.sha1(str(path.name).encode()).hexdigest(), 16) % folds


def cross_fit(
    rows: Sequence[EvalRow],
    embeddings: np.ndarray,
    masses: np.ndarray,
    model: dict[str, Any],
    options: EvalOptions,
    weights: Sequence[float],
    *,
    labels: tuple[str, ...],
    saturation: float = 1.0,
    folds: int = 2,
) -> dict[float, dict[str, Any]]:
    """Train rows only: per fold, the other folds' landmark photos are the gallery and their non-landmarks
    calibrate; the fold's photos are scored. Returns, per weight, the pooled metrics over the folds."""
    train = [i for i, r in enumerate(rows) if r.split == "train"]
    out: dict[float, dict[str, Any]] = {}
    predicted: dict[float, list[str | None]] = {w: [] for w in weights}
    scored: list[EvalRow] = []
    for k in range(folds):
        fit = [i for i in train if _fold(rows[i].path, folds) != k]
        held = [i for i in train if _fold(rows[i].path, folds) == k]
        sub = [rows[i] for i in fit]
        bundle = build_eval_bundle(sub, embeddings[fit], model, options)
        fit_n = [i for i in fit if not rows[i].is_landmark]
        scored += [rows[i] for i in held]
        for w in weights:
            b = with_scene_prior(
                bundle,
                embeddings[fit_n],
                masses[fit_n],
                w,
                labels=labels,
                saturation=saturation,
                rejection=options.rejection,
            )
            predicted[w] += predict(b, embeddings[held], masses[held])
    for w in weights:
        out[w] = metrics_for(scored, predicted[w])
    return out


def compare_prior(
    rows: Sequence[EvalRow],
    embeddings: np.ndarray,
    logits: np.ndarray,
    model: dict[str, Any],
    options: EvalOptions,
    *,
    weights: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.4),
    label_sets: Sequence[tuple[str, ...]] = (LANDMARK_LABELS, ("architecture",)),
    saturations: Sequence[float] = (1.0, 0.1),
    mapping: SceneMapping | None = None,
    target: float = 0.99,
    min_gain: float = 0.01,
) -> dict[str, Any]:
    """Tune the prior (labels, saturation, weight) on the train rows by cross-fitting, then report the test rows
    with and without it, both calibrated on all train non-landmarks to the same rejection. Weight 0 (no prior)
    is always a candidate and a prior is chosen only if it gains ``min_gain`` train landmark accuracy (one photo
    in a thousand is noise), so "chosen weight 0" means the prior did not help on the train rows."""
    weights = sorted({0.0, *weights})
    mapping = mapping or load_mapping()
    train_n = [i for i, r in enumerate(rows) if r.split == "train" and not r.is_landmark]
    test = [i for i, r in enumerate(rows) if r.split == "test"]
    tuning: list[dict[str, Any]] = []
    for labels in label_sets:
        masses = landmark_mass(logits, mapping, labels)
        for sat in saturations:
            fitted = cross_fit(rows, embeddings, masses, model, options, weights, labels=labels, saturation=sat)
            for w, m in fitted.items():
                tuning.append({"weight": w, "labels": list(labels), "saturation": sat, **_summary(m)})
    base = tuning[0]  # weight 0: the plain decision
    # Best train landmark accuracy among settings that reject at least as many held-out non-landmarks; ties go
    # to the plain decision (weight 0 sorts first).
    ok = [t for t in tuning if t["non_landmark_accuracy"] >= base["non_landmark_accuracy"]]
    candidate = max(ok, key=lambda t: (t["landmark_accuracy"], -t["weight"]))
    best = candidate if candidate["landmark_accuracy"] >= base["landmark_accuracy"] + min_gain else base
    bundle = build_eval_bundle(rows, embeddings, model, options)
    test_rows = [rows[i] for i in test]
    labels = tuple(best["labels"])
    masses = landmark_mass(logits, mapping, labels)
    tuned = with_scene_prior(
        bundle,
        embeddings[train_n],
        masses[train_n],
        best["weight"],
        labels=labels,
        saturation=best["saturation"],
        rejection=options.rejection,
    )
    without = metrics_for(test_rows, predict(bundle, embeddings[test], None))
    with_prior = metrics_for(test_rows, predict(tuned, embeddings[test], masses[test]))
    all_labels = landmark_mass(logits, mapping, LANDMARK_LABELS)[test]
    linear = with_scene_prior(
        bundle, embeddings[train_n], landmark_mass(logits, mapping, LANDMARK_LABELS)[train_n], 0.2
    )
    return {
        "tuning": tuning,
        "chosen": {k: best[k] for k in ("weight", "labels", "saturation")},
        "best_candidate": candidate,
        "test_without_prior": _summary(without),
        "test_with_prior": _summary(with_prior),
        # Reading the test rows (not tuning): thresholds raised until the test non-landmark accuracy is reached.
        "test_at_target": {
            "target_non_landmark_accuracy": target,
            "without_prior": at_non_landmark_accuracy(bundle, embeddings[test], None, test_rows, target),
            "chosen_prior": at_non_landmark_accuracy(tuned, embeddings[test], masses[test], test_rows, target),
            "linear_prior_0.2": at_non_landmark_accuracy(linear, embeddings[test], all_labels, test_rows, target),
        },
        "prior_thresholds": tuned.scenes.prior.thresholds,
        "thresholds": bundle.thresholds.to_dict(),
    }


def _raise(bundle: Bundle, by: float) -> Bundle:
    def up(t: Thresholds) -> Thresholds:
        per = {k: v + by for k, v in t.per_landmark.items()}
        return dataclasses.replace(t, verification=t.verification + by, geo=t.geo + by, per_landmark=per)

    prior = bundle.scenes.prior
    if prior.thresholds:
        prior = dataclasses.replace(prior, thresholds=up(Thresholds.from_dict(prior.thresholds)).to_dict())
    return dataclasses.replace(
        bundle, thresholds=up(bundle.thresholds), scenes=dataclasses.replace(bundle.scenes, prior=prior)
    )


def at_non_landmark_accuracy(
    bundle: Bundle,
    embeddings: np.ndarray,
    masses: np.ndarray | None,
    rows: Sequence[EvalRow],
    target: float,
    *,
    step: float = 0.005,
    limit: float = 0.3,
) -> dict[str, Any] | None:
    """Metrics at the smallest uniform raise of the verification thresholds that reaches ``target`` non-landmark
    accuracy on ``rows`` (None if ``limit`` is not enough): an operating point for comparisons, not calibration."""
    for by in np.arange(0.0, limit + 1e-9, step):
        m = metrics_for(rows, predict(_raise(bundle, float(by)), embeddings, masses))
        if m["non_landmark_accuracy"] is not None and m["non_landmark_accuracy"] >= target:
            return {"raised_by": round(float(by), 4), **_summary(m)}
    return None


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("landmark_accuracy", "non_landmark_accuracy", "wrong_landmark", "missed_landmark", "false_accepts")
    return {k: m[k] for k in keys}
