"""`landmarks eval --train --mode finetune`: tune the last backbone blocks on a manifest's train landmark photos,
re-embed every row with the tuned backbone, then train, calibrate and score exactly as ``features`` mode does.

As in :func:`shared.training.service.train_model_version`, the backbone is tuned once, on the train LANDMARK
photos only: the non-landmark photos (the head's out-of-fold calibration negatives) and every test row stay out of
it, so the calibration and the test figures stay honest. Tuned features are never cached: the embedding cache is
keyed by the untrained network's config, and a tuned backbone differs from run to run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from shared.evaluation.recognition import EvalOptions, embed_rows, evaluate_embeddings
from shared.evaluation.trained_head import train_and_evaluate
from shared.gallery.manifest import EvalRow, landmarks_from_rows
from shared.training.curriculum import region_of
from shared.training.fit import ProgressFn, TrainedModel, TrainingProgress
from shared.training.service import FinetuneOptions, tune_backbone_state, tuned_embedder
from shared.training.trainer import TrainConfig, TrainingData

UNTRAINED_DECISION_KEYS = ("landmark_accuracy", "non_landmark_accuracy", "wrong_landmark", "precision", "recall")


def _clock() -> tuple[float, float]:
    """(wall, process CPU) seconds: CPU time counts every torch thread of this process."""
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = _clock()
    return {"seconds": round(wall - start[0], 1), "cpu_seconds": round(cpu - start[1], 1)}


def tuning_set(rows: Sequence[EvalRow]) -> tuple[list[int], TrainingData]:
    """Row indices and classes of the train landmark photos: the only photos the backbone is tuned on."""
    landmarks = landmarks_from_rows(rows)
    index = {lm.slug: i for i, lm in enumerate(landmarks)}
    chosen = [i for i, r in enumerate(rows) if r.split == "train" and r.is_landmark]
    labels = np.array([index[rows[i].landmark] for i in chosen], dtype=np.int64)  # type: ignore[index]
    return chosen, TrainingData(labels, len(landmarks), [region_of(rows[i].country) for i in chosen])


def finetune_and_evaluate(
    rows: Sequence[EvalRow],
    embedder: Any,
    options: EvalOptions,
    config: TrainConfig,
    finetune: FinetuneOptions,
    *,
    finetune_epochs: int = 5,
    min_side: int,
    max_pixels: int = 200_000_000,
    folds: int = 5,
    progress: ProgressFn | None = None,
    embed_progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], TrainedModel]:
    """Tune, re-embed every row, train the head with cross-fitted calibration, score the test rows.

    ``embedder`` is the untrained network (:class:`shared.model.Embedder`, no head): its config and weights are
    what tuning starts from. The tuning run uses ``config`` with ``finetune_epochs`` epochs in one stage (no
    region curriculum: on a CPU the backbone epochs are the cost, so each one covers every landmark); the head then
    trains with ``config`` unchanged, as in ``features`` mode.
    """
    import torch

    from shared.imaging.batches import decoded_batches, file_loader
    from shared.imaging.decode import fit_for_resize

    runs = folds + 2  # tuning, final head, folds

    def shifted(p: TrainingProgress) -> None:
        if progress:
            progress(replace(p, run=p.run + 1, runs=runs))

    start = _clock()
    chosen, data = tuning_set(rows)
    images, ok, failed = [], [], []
    load = file_loader(min_side=min_side, max_pixels=max_pixels)
    for batch in decoded_batches([rows[i].path for i in chosen], load, batch_size=64):
        images.extend(batch.images)
        ok.extend(batch.indices)
        failed.extend(f"{rows[chosen[j]].path}: {reason}" for j, reason in batch.failed)
    if not images:
        raise ValueError("the manifest has no decodable train landmark photos to tune on")
    data = TrainingData(data.labels[ok], data.num_landmarks, [data.regions[j] for j in ok])
    tune_config = replace(config, epochs=finetune_epochs, curriculum=False)
    state = tune_backbone_state(images, data, tune_config, embedder.config, finetune, progress=progress, runs=runs)
    del images
    tuned_at = _since(start)

    start = _clock()
    if progress:
        progress(TrainingProgress("embedding every row with the tuned backbone", 1, runs))
    tuned = tuned_embedder(embedder, state, finetune)
    embedded = embed_rows(
        rows,
        tuned,
        cache_dir=None,  # tuned features never enter the untrained network's cache
        min_side=min_side,
        # as recognition decodes; tuning crops keep the short side
        fit=fit_for_resize(embedder.config.resize, embedder.config.decode_fit),
        max_pixels=max_pixels,
        batch_size=embedder.batch_size,
        progress=embed_progress,
    )
    embedded_at = _since(start)

    info = {
        "blocks": finetune.blocks,
        "epochs": finetune_epochs,
        "photos": len(ok),
        "on": "train landmark photos",
        "tensors": len(state),
        "device": finetune.device,
        "torch_threads": torch.get_num_threads(),
        "failed": failed,
        "tune": tuned_at,
        "embed": {**embedded_at, "photos": embedded.embedded, "failed": len(embedded.failed)},
    }
    model = {**tuned.describe(), "finetune": {k: info[k] for k in ("blocks", "epochs", "tensors", "on")}}
    # The tuned features under the untrained decision (kNN verification, thresholds and margin from the train rows,
    # no head): tuning alone tightens each landmark's cluster, which is what turns unknown landmarks away.
    plain = evaluate_embeddings(rows, embedded, model, options)
    info["without_head"] = {k: plain[k] for k in UNTRAINED_DECISION_KEYS}
    start = _clock()
    report, trained = train_and_evaluate(
        rows, embedded, model, options, config, folds=folds, progress=shifted, backbone_state=state
    )
    info["head"] = _since(start)
    info.update(
        {
            "seconds": round(sum(info[k]["seconds"] for k in ("tune", "embed", "head")), 1),
            "cpu_seconds": round(sum(info[k]["cpu_seconds"] for k in ("tune", "embed", "head")), 1),
        }
    )
    report["finetune"] = info
    return report, trained
