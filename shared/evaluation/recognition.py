"""Offline evaluation on a manifest CSV: build a bundle from the ``train`` rows, score every ``test`` row.

Manifest columns: ``path,kind,landmark_id,landmark_name,city,country,lat,lon,split`` and an optional ``notes``
(paths relative to the manifest; kind ``landmark`` | ``non_landmark`` | ``unknown_landmark``, a landmark the
gallery does not know: the operator's landmark-like negatives in train rows, photos that must get no album in
test rows). Embeddings are cached on disk per file (path, size, mtime) and
embedder config, so re-runs with other decision parameters skip the network.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.evaluation.open_set import open_set_metrics
from shared.evaluation.row_cache import RowCache
from shared.gallery.manifest import UNKNOWN_LANDMARK_KIND, EvalRow, landmarks_from_rows
from shared.imaging.decode import Fit
from shared.index import l2_normalize
from shared.recognition.build import build_bundle_from_embeddings
from shared.recognition.bundle import Bundle, save_bundle
from shared.recognition.decision import DecisionParams
from shared.recognition.recognizer import EmbedsImages, Recognizer
from shared.recognition.whitening import WhiteningOptions


@dataclass
class EmbeddedRows:
    embeddings: np.ndarray
    gps: list[tuple[float, float] | None]
    embedded: int = 0  # photos that went through the network (the rest came from the cache)
    decode_s: float = 0.0
    embed_s: float = 0.0
    failed: list[str] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)  # per-photo ms: this run's, else the cached run's

    def subset(self, indices: Sequence[int]) -> EmbeddedRows:
        """The rows at ``indices`` (e.g. without a held-out landmark's train rows), timings kept."""
        picked = list(indices)
        return dataclasses.replace(
            self, embeddings=self.embeddings[picked], gps=[self.gps[i] for i in picked], failed=list(self.failed)
        )

    def per_photo_ms(self) -> dict[str, Any]:
        if self.embedded:
            return {
                "decode": 1e3 * self.decode_s / self.embedded,
                "embed": 1e3 * self.embed_s / self.embedded,
                "photos": self.embedded,
                "source": "this run",
            }
        return self.timing


def embed_rows(
    rows: Sequence[EvalRow],
    embedder: EmbedsImages,
    *,
    cache_dir: Path | None,
    min_side: int,
    fit: Fit = "short",
    max_pixels: int = 200_000_000,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> EmbeddedRows:
    """Embeddings (N x D) and EXIF GPS of every row, from the cache where possible; photos decoded to ``min_side``
    on their ``fit`` side (``shared.imaging.fit_for_resize`` of the network's resize mode).

    A photo that cannot be decoded gets a zero embedding (never matches) and is listed in ``failed``.
    """
    from shared.imaging.batches import decoded_batches, file_loader

    out: list[np.ndarray | None] = [None] * len(rows)
    gps: list[tuple[float, float] | None] = [None] * len(rows)
    todo: list[int] = []
    result = EmbeddedRows(np.zeros((0, 0), np.float32), gps)
    cache = RowCache(cache_dir) if cache_dir else None
    for i, r in enumerate(rows):
        cached = cache.load(r.path) if cache else None
        if cached is not None:
            out[i] = cached["embedding"]
            g = cached["gps"]
            gps[i] = None if np.isnan(g).any() else (float(g[0]), float(g[1]))
        else:
            todo.append(i)
    done = len(rows) - len(todo)
    load = file_loader(min_side=min_side, fit=fit, max_pixels=max_pixels)
    for batch in decoded_batches([rows[i].path for i in todo], load, batch_size=batch_size):
        result.failed.extend(f"{rows[todo[j]].path}: {reason}" for j, reason in batch.failed)
        ok = [todo[j] for j in batch.indices]
        for i, photo in zip(ok, batch.photos, strict=True):
            gps[i] = photo.meta.gps
        t1 = time.perf_counter()
        vecs = embedder.embed(batch.images) if batch.photos else np.zeros((0, 0), np.float32)
        result.decode_s += batch.decode_s
        result.embed_s += time.perf_counter() - t1
        result.embedded += len(ok)
        for i, v in zip(ok, vecs, strict=True):
            out[i] = v
            if cache:
                g = np.array(gps[i] if gps[i] else (np.nan, np.nan), dtype=np.float64)
                cache.save(rows[i].path, embedding=v, gps=g)
        done += len(batch.indices) + len(batch.failed)
        if progress:
            progress(done, len(rows))
    timing_file = cache_dir / "timing.json" if cache_dir else None
    if timing_file is not None and result.embedded:
        timing_file.parent.mkdir(parents=True, exist_ok=True)
        timing_file.write_text(json.dumps({**result.per_photo_ms(), "source": f"cached run of {time.ctime()}"}))
    elif timing_file is not None and timing_file.is_file():
        result.timing = json.loads(timing_file.read_text())
    dim = next((len(v) for v in out if v is not None), 0)
    result.embeddings = np.stack([v if v is not None else np.zeros(dim, np.float32) for v in out]).astype(np.float32)
    return result


def metrics_for(rows: Sequence[EvalRow], predicted: Sequence[str | None]) -> dict[str, Any]:
    """Landmark accuracy (right landmark), non-landmark accuracy (no landmark), wrong-landmark count, P/R."""
    lm = [(r, p) for r, p in zip(rows, predicted, strict=True) if r.is_landmark]
    nl = [(r, p) for r, p in zip(rows, predicted, strict=True) if not r.is_landmark]
    correct = sum(p == r.landmark for r, p in lm)
    wrong = sum(p is not None and p != r.landmark for r, p in lm)
    false_accepts = sum(p is not None for _, p in nl)
    accepted = sum(p is not None for p in predicted)
    return {
        "landmark_accuracy": correct / len(lm) if lm else None,
        "non_landmark_accuracy": (len(nl) - false_accepts) / len(nl) if nl else None,
        "wrong_landmark": wrong,
        "missed_landmark": sum(p is None for _, p in lm),
        "false_accepts": false_accepts,
        "precision": correct / accepted if accepted else None,
        "recall": correct / len(lm) if lm else None,
        "counts": {"landmark": len(lm), "non_landmark": len(nl), "accepted": accepted, "correct": correct},
    }


@dataclass(frozen=True)
class EvalOptions:
    use_gps: bool = False
    rejection: float = 0.99
    landmark_rejection: float | None = 1.0
    global_rejection: float = 0.9
    geo_rejection: float = 0.9
    margin_share: float = 0.5
    distance_threshold: float = 0.6
    cluster_fraction: float = 0.1
    max_references: int = 200
    shortlist: int = 10
    verification_k: int = 3
    geo_radius_km: float = 1.0
    top_k: int = 1
    unknown_rejection: float | None = None  # calibrate the open-set score on left-out landmarks (None: off)
    whitening: WhiteningOptions | None = None  # build in the gallery's whitened space (None: raw features)


def build_eval_bundle(
    rows: Sequence[EvalRow], embeddings: np.ndarray, model: dict[str, Any], options: EvalOptions
) -> Bundle:
    """Bundle from the train rows: landmark photos -> gallery, non-landmark photos -> calibration."""
    landmarks = landmarks_from_rows(rows)
    ids = {lm.slug: lm.id for lm in landmarks}
    train_l = [i for i, r in enumerate(rows) if r.split == "train" and r.is_landmark]
    train_n = [i for i, r in enumerate(rows) if r.split == "train" and r.kind == "non_landmark"]
    train_u = [i for i, r in enumerate(rows) if r.split == "train" and r.kind == UNKNOWN_LANDMARK_KIND]
    if not train_l or not train_n:
        raise ValueError("the manifest needs train rows of both kinds (landmark and non_landmark)")
    return build_bundle_from_embeddings(
        version="eval",
        model=model,
        landmarks=landmarks,
        gallery=embeddings[train_l],
        gallery_landmarks=np.array([ids[rows[i].landmark] for i in train_l], dtype=np.int64),  # type: ignore[index]
        non_landmarks=embeddings[train_n],
        max_references=options.max_references,
        distance_threshold=options.distance_threshold,
        cluster_fraction=options.cluster_fraction,
        rejection=options.rejection,
        landmark_rejection=options.landmark_rejection,
        global_rejection=options.global_rejection,
        geo_rejection=options.geo_rejection,
        margin_share=options.margin_share,
        unknown_rejection=options.unknown_rejection,
        whitening=options.whitening,
        unknown_landmarks=embeddings[train_u] if train_u else None,
        decision=DecisionParams(
            geo_radius_km=options.geo_radius_km,
            top_k=options.top_k,
            shortlist=options.shortlist,
            verification_k=options.verification_k,
        ),
    )


def evaluate_embeddings(
    rows: Sequence[EvalRow],
    embedded: EmbeddedRows,
    model: dict[str, Any],
    options: EvalOptions,
    embedder: EmbedsImages | None = None,
    *,
    save_to: Path | None = None,
) -> dict[str, Any]:
    """Build from train rows, decide every test row, and report metrics (plus the bundle's thresholds).

    ``save_to``: also write the bundle (with these metrics) there, e.g. for ``landmarks recognize --bundle``.
    """
    e = l2_normalize(embedded.embeddings)
    bundle = build_eval_bundle(rows, e, model, options)
    recognizer = Recognizer(bundle, embedder or _NoEmbedder())
    test = [i for i, r in enumerate(rows) if r.split == "test"]
    t0 = time.perf_counter()
    gps = [embedded.gps[i] if options.use_gps else None for i in test]
    queries = e[test]
    if bundle.head_state:  # the gallery's whitening: what the network's head does to a worker's photo
        from shared.model.head import project

        queries = project(bundle.head_state, queries)
    results = recognizer.decide(queries, gps)
    decide_s = time.perf_counter() - t0
    predicted = [recognizer.slug(r.landmark_id) for r in results]
    test_rows = [rows[i] for i in test]
    report = metrics_for(test_rows, predicted)
    report["open_set"] = open_set_metrics(
        test_rows, predicted, results, bundle.thresholds, {lm.slug: lm.id for lm in bundle.landmarks}, bundle.open_set
    )
    timing = embedded.per_photo_ms()
    per_photo_ms = timing["decode"] + timing["embed"] if timing else None
    report.update(
        {
            "thresholds": bundle.thresholds.to_dict(),
            "ms_per_photo": per_photo_ms,
            "timings_ms": {
                "decode_per_photo": timing.get("decode"),
                "embed_per_photo": timing.get("embed"),
                "measured_on": timing.get("source"),
                "decide_per_photo": 1e3 * decide_s / len(test) if test else None,
            },
            "counts": {
                **report["counts"],
                "rows": len(rows),
                "train_landmark": sum(r.split == "train" and r.is_landmark for r in rows),
                "train_non_landmark": sum(r.split == "train" and r.kind == "non_landmark" for r in rows),
                "train_unknown_landmark": sum(r.split == "train" and r.kind == UNKNOWN_LANDMARK_KIND for r in rows),
                "test": len(test),
                "embedded": embedded.embedded,
                "from_cache": len(rows) - embedded.embedded,
                "failed": len(embedded.failed),
                "centroids": len(bundle.centroids),
                "references": len(bundle.references),
            },
            "config": {"model": model, "options": options.__dict__},
            "errors": [
                {"path": str(r.path), "expected": r.landmark, "predicted": p, "method": res.method}
                for r, p, res in zip(test_rows, predicted, results, strict=True)
                if p != r.landmark
            ],
        }
    )
    if save_to is not None:
        summary = {k: report[k] for k in ("landmark_accuracy", "non_landmark_accuracy", "wrong_landmark")}
        version = "eval-" + time.strftime("%Y%m%d-%H%M%S")
        save_bundle(dataclasses.replace(bundle, version=version, metrics=summary), save_to)
        report["bundle"] = str(save_to)
    return report


class _NoEmbedder:
    def embed(self, images: Sequence[Any]) -> np.ndarray:
        raise RuntimeError("this recognizer only decides on precomputed embeddings")
