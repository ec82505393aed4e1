"""Train, cross-fit, calibrate: cached features in, a trained head with out-of-fold thresholds out.

The steps, each a function the evaluator, the CLI and the Celery task share:

1. the final run on every photo; its gallery embeddings give the multi-centroid index and references;
2. K more runs, each without one fold of the training photos; the held-out photos are scored against that
   run's own centroids, references and presence gate (:mod:`shared.training.crossfit`);
3. thresholds at the target non-landmark rejection from the pooled held-out non-landmark scores of step 2, and
   the margin from the held-out landmark photos' wrong answers (report: "out-of-fold").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from shared.model.head import project
from shared.recognition.bundle import Bundle, LandmarkInfo
from shared.recognition.decision import DecisionParams
from shared.recognition.open_set import OpenSetModel
from shared.training.crossfit import (
    CALIBRATION_IN_SAMPLE,
    CALIBRATION_OUT_OF_FOLD,
    Calibration,
    FoldModel,
    IndexOptions,
    calibrate,
    fit_gate,
    index_bundle,
    out_of_fold_scores,
    score,
)
from shared.training.gate import PresenceGate
from shared.training.trainer import EpochReport, TrainConfig, TrainingData, TrainResult, train_on_features


@dataclass(frozen=True)
class TrainingProgress:
    """One line of progress: the phase (``fold 2/5`` or ``final``), the epoch report, runs done / total."""

    phase: str
    run: int
    runs: int
    epoch: EpochReport | None = None

    def as_meta(self) -> dict[str, Any]:
        e = self.epoch
        return {
            "phase": self.phase,
            "run": self.run,
            "runs": self.runs,
            "stage": e.stage if e else None,
            "stages": e.stages if e else None,
            "epoch": e.epoch if e else None,
            "epochs": e.epochs if e else None,
            "loss": None if e is None else round(e.loss, 5),
        }


ProgressFn = Callable[[TrainingProgress], None]


@dataclass(frozen=True)
class FeatureDataset:
    """Cached pooled features of the training photos with their classes (see :class:`TrainingData`)."""

    features: np.ndarray  # N x C, L2-normalised pooled backbone features (before the head)
    data: TrainingData
    views: tuple[np.ndarray, ...] = ()  # augmented views, each N x C (NaN rows: no view)

    def subset(self, rows: np.ndarray) -> FeatureDataset:
        rows = np.asarray(rows)
        return FeatureDataset(
            self.features[rows],
            TrainingData(self.data.labels[rows], self.data.num_landmarks, [self.data.regions[i] for i in rows]),
            tuple(v[rows] for v in self.views),
        )

    @property
    def landmark_rows(self) -> np.ndarray:
        return np.flatnonzero(self.data.labels != self.data.no_landmark)

    @property
    def non_landmark_rows(self) -> np.ndarray:
        return np.flatnonzero(self.data.labels == self.data.no_landmark)


@dataclass
class TrainedModel:
    """A trained head's bundle (out-of-fold thresholds, presence gate in ``model["presence_gate"]``)."""

    bundle: Bundle
    result: TrainResult
    config: TrainConfig
    gate: PresenceGate | None
    calibration: Calibration
    seconds: float = 0.0
    runs: int = 1
    mode: str = "features"  # features | finetune (the bundle then carries the tuned backbone tensors)

    @property
    def head_state(self) -> dict[str, Any]:
        return self.result.head_state

    def summary(self, rejection: float) -> dict[str, Any]:
        """What goes into the model version's metrics (the open-set score's flat, as an untrained build's, so
        `model list` shows them and the registry's open-set warning sees the version has one)."""
        return {
            **open_set_metrics(self.bundle),
            "training": {
                **self.config.to_dict(),
                "mode": self.mode,
                "runs": self.runs,
                "seconds": round(self.seconds, 1),
                "final_loss": round(self.result.final_loss, 5),
                "first_loss": round(self.result.history[0].loss, 5) if self.result.history else None,
            },
            "calibration": self.calibration.describe(rejection),
            "calibration_method": self.calibration.method,
            "presence_gate_threshold": self.calibration.gate_threshold,
        }


def open_set_metrics_of(open_set: OpenSetModel | None) -> dict[str, Any]:
    """An open-set score's metrics, flat and prefixed as :func:`shared.recognition.build` stores them."""
    if open_set is None:
        return {}
    return {f"open_set_{k}": v for k, v in open_set.metrics.items() if k != "folds"}


def open_set_metrics(bundle: Bundle) -> dict[str, Any]:
    return open_set_metrics_of(bundle.open_set)


def _fit(ds: FeatureDataset, config: TrainConfig, use_gate: bool, progress: Callable[[EpochReport], None] | None):
    result = train_on_features(ds.features, ds.data, config, views=ds.views, progress=progress)
    emb = project(result.head_state, ds.features)
    is_landmark = ds.data.labels != ds.data.no_landmark
    gate = fit_gate(emb, is_landmark) if use_gate else None
    return result, emb, gate


def train_model(
    ds: FeatureDataset,
    landmarks: Sequence[LandmarkInfo],
    config: TrainConfig,
    *,
    version: str,
    model: dict[str, Any],
    decision: DecisionParams | None = None,
    folds: int = 5,
    rejection: float = 0.99,
    global_rejection: float = 0.9,
    geo_rejection: float = 0.9,
    gate_rejection: float = 0.9,
    margin_share: float = 0.5,
    use_gate: bool = True,
    index: IndexOptions | None = None,
    metrics: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    backbone_state: dict[str, Any] | None = None,
    unknown_rejection: float | None = None,
) -> TrainedModel:
    """Train on everything, cross-fit ``folds`` more runs, and return the bundle with out-of-fold thresholds.

    ``landmarks[i]`` is class ``i`` of ``ds``; ``folds=0`` skips cross-fitting and calibrates in-sample (only
    for tiny smoke runs: such thresholds collapse, see :mod:`shared.training.crossfit`). ``backbone_state`` (the
    tuned tensors of a fine-tuned backbone whose features ``ds`` holds) goes into the bundle, which is then a
    ``finetune``-mode model.
    """
    t0 = time.perf_counter()
    index = index or IndexOptions()
    decision = decision or DecisionParams()
    runs = folds + 1
    ids = np.array([lm.id for lm in landmarks], dtype=np.int64)
    landmark_rows, non_landmark_rows = ds.landmark_rows, ds.non_landmark_rows

    def reporter(phase: str, run: int) -> Callable[[EpochReport], None] | None:
        if progress is None:
            return None
        return lambda e: progress(TrainingProgress(phase, run, runs, e))

    result, emb, gate = _fit(ds, config, use_gate, reporter("final", 1))
    final = index_bundle(
        emb[landmark_rows], ids[ds.data.labels[landmark_rows]], emb[non_landmark_rows], landmarks, decision, index
    )
    run_numbers = iter(range(2, runs + 1))

    def fit_without(held: np.ndarray) -> FoldModel:
        run = next(run_numbers)
        keep = np.setdiff1d(np.arange(len(ds.features)), held)
        r, e, g = _fit(ds.subset(keep), config, use_gate, reporter(f"fold {run - 1}/{folds}", run))
        kept_landmarks = np.isin(keep, landmark_rows)
        return FoldModel(
            gallery=e[kept_landmarks],
            gallery_landmarks=ids[ds.data.labels[keep][kept_landmarks]],
            held_out=project(r.head_state, ds.features[held]),
            gate=g,
        )

    if folds >= 2:
        # Cross-fit over all training photos: held-out non-landmarks calibrate the thresholds, held-out landmark
        # photos the margin (their wrong answers are what the margin is for).
        everyone = np.arange(len(ds.features))
        scores, order = out_of_fold_scores(everyone, fit_without, landmarks, decision, index, folds=folds)
        is_nl = ds.data.labels[order] == ds.data.no_landmark
        calibration = calibrate(
            scores.subset(is_nl),
            final.thresholds.margin,
            rejection=rejection,
            global_rejection=global_rejection,
            geo_rejection=geo_rejection,
            gate_rejection=gate_rejection,
            landmark_scores=scores.subset(~is_nl),
            landmark_truth=ids[ds.data.labels[order][~is_nl]],
            margin_share=margin_share,
            method=CALIBRATION_OUT_OF_FOLD,
        )
    else:
        calibration = calibrate(
            score(final, emb[non_landmark_rows], gate),
            final.thresholds.margin,
            rejection=rejection,
            global_rejection=global_rejection,
            geo_rejection=geo_rejection,
            gate_rejection=gate_rejection,
            method=CALIBRATION_IN_SAMPLE,
        )
    model_info = {**model, "embedding_dim": int(emb.shape[1])}
    if gate is not None and calibration.gate_threshold is not None:
        model_info["presence_gate"] = {**gate.to_dict(), "threshold": calibration.gate_threshold}
    bundle = replace(
        final,
        version=version,
        model=model_info,
        thresholds=calibration.thresholds,
        head_state=result.head_state,
        backbone_state=backbone_state or None,
        metrics=metrics or {},
    )
    if unknown_rejection and folds >= 2:
        from shared.training.open_set import fit_trained_open_set  # imports this module's FeatureDataset

        if progress:
            progress(TrainingProgress("open set", runs, runs))
        open_set = fit_trained_open_set(
            ds, ids, config, result.head_state, decision, unknown_rejection=unknown_rejection
        )
        bundle = replace(bundle, open_set=open_set, metrics={**bundle.metrics, **open_set_metrics_of(open_set)})
    if progress:
        progress(TrainingProgress("done", runs, runs))
    mode = "finetune" if backbone_state else "features"
    return TrainedModel(bundle, result, config, gate, calibration, time.perf_counter() - t0, runs, mode)
