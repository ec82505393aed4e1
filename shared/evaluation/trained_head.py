"""`landmarks eval --train`: train the head on a manifest's train rows (cached features), score its test rows.

The features are the evaluator's cached embeddings of the untrained network (pooled, L2-normalised backbone
features: exactly the head's input), so a re-run trains in seconds per run without touching the backbone.
``--mode finetune`` (:mod:`shared.evaluation.finetune`) passes features of a tuned backbone instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.evaluation.open_set import open_set_metrics
from shared.evaluation.recognition import EmbeddedRows, EvalOptions, metrics_for
from shared.gallery.manifest import EvalRow, landmarks_from_rows
from shared.model.head import project
from shared.recognition.decision import DecisionParams
from shared.recognition.recognizer import Recognizer
from shared.training.crossfit import IndexOptions
from shared.training.curriculum import region_of
from shared.training.fit import FeatureDataset, ProgressFn, TrainedModel, train_model
from shared.training.trainer import TrainConfig, TrainingData


def dataset_from_rows(
    rows: Sequence[EvalRow], features: np.ndarray, views: Sequence[np.ndarray] = ()
) -> tuple[FeatureDataset, tuple[Any, ...]]:
    """The train rows as a :class:`FeatureDataset` (class i = landmark id i + 1 of :func:`landmarks_from_rows`)."""
    landmarks = landmarks_from_rows(rows)
    index = {lm.slug: i for i, lm in enumerate(landmarks)}
    train = [i for i, r in enumerate(rows) if r.split == "train"]
    labels = np.array([index[r.landmark] if r.landmark else len(landmarks) for r in (rows[i] for i in train)])
    regions = [region_of(rows[i].country) if rows[i].landmark else "" for i in train]
    ds = FeatureDataset(
        np.asarray(features, dtype=np.float32)[train],
        TrainingData(labels, len(landmarks), regions),
        tuple(np.asarray(v, dtype=np.float32)[train] for v in views),
    )
    return ds, landmarks


def gated_predictions(recognizer: Recognizer, embeddings: np.ndarray, gps: list[Any]) -> list[str | None]:
    """The recognizer's decisions as slugs; the bundle's presence gate (when it has one) is part of the decision,
    exactly as in the workers."""
    return [recognizer.slug(r.landmark_id) for r in recognizer.decide(embeddings, gps)]


def train_and_evaluate(
    rows: Sequence[EvalRow],
    embedded: EmbeddedRows,
    model: dict[str, Any],
    options: EvalOptions,
    config: TrainConfig,
    *,
    folds: int = 5,
    use_gate: bool = True,
    views: Sequence[np.ndarray] = (),
    progress: ProgressFn | None = None,
    backbone_state: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], TrainedModel]:
    """Train on the train rows (cross-fitted calibration), decide every test row; the report has the evaluator's
    metrics plus the training summary. ``backbone_state``: the tuned tensors when ``embedded`` holds features of
    a fine-tuned backbone (:mod:`shared.evaluation.finetune`); the bundle then carries them."""
    ds, landmarks = dataset_from_rows(rows, embedded.embeddings, views)
    if not len(ds.landmark_rows) or not len(ds.non_landmark_rows):
        raise ValueError("the manifest needs train rows of both kinds (landmark and non_landmark)")
    trained = train_model(
        ds,
        landmarks,
        config,
        version="eval-train",
        model=model,
        decision=DecisionParams(
            geo_radius_km=options.geo_radius_km,
            top_k=options.top_k,
            shortlist=options.shortlist,
            verification_k=options.verification_k,
        ),
        folds=folds,
        rejection=options.rejection,
        global_rejection=options.global_rejection,
        geo_rejection=options.geo_rejection,
        use_gate=use_gate,
        index=IndexOptions(options.distance_threshold, options.cluster_fraction),
        progress=progress,
        backbone_state=backbone_state,
        unknown_rejection=options.unknown_rejection,
    )
    test = [i for i, r in enumerate(rows) if r.split == "test"]
    t0 = time.perf_counter()
    emb = project(trained.head_state, embedded.embeddings[test])
    recognizer = Recognizer(trained.bundle, _NoEmbedder())
    gps = [embedded.gps[i] if options.use_gps else None for i in test]
    results = recognizer.decide(emb, gps)  # the bundle's presence gate is part of the decision, as in workers
    predicted = [recognizer.slug(r.landmark_id) for r in results]
    test_rows = [rows[i] for i in test]
    report = metrics_for(test_rows, predicted)
    bundle = trained.bundle
    report["open_set"] = open_set_metrics(
        test_rows, predicted, results, bundle.thresholds, {lm.slug: lm.id for lm in bundle.landmarks}, bundle.open_set
    )
    report.update(
        {
            "thresholds": trained.bundle.thresholds.to_dict(),
            **trained.summary(options.rejection),
            "decide_ms_per_photo": 1e3 * (time.perf_counter() - t0) / max(1, len(test)),
            "errors": [
                {"path": str(r.path), "expected": r.landmark, "predicted": p}
                for r, p in zip(test_rows, predicted, strict=True)
                if p != r.landmark
            ],
        }
    )
    report["counts"].update({"train": len(ds.features), "test": len(test), "centroids": len(trained.bundle.centroids)})
    return report, trained


class _NoEmbedder:
    def embed(self, images: Sequence[Any]) -> np.ndarray:
        raise RuntimeError("decides on precomputed embeddings only")
