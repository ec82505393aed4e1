"""Celery tasks of the `training` queue: a thin shell over :func:`shared.training.service.train_model_version`.

Progress goes to the result backend as task state ``PROGRESS`` with the phase, stage, epoch and loss.
``options["mode"]`` is ``features`` (default: the head on cached backbone features) or ``finetune`` (the last
``options["blocks"]`` backbone blocks too, on ``options["cached_views"]`` cached views per photo when set; the
bundle then carries them; ``options["head"]`` False publishes the tuned backbone without a head).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task

from shared.db.models import ModelVersion

MODES = ("features", "finetune")


def train_from_options(
    options: dict[str, Any], *, activate: bool = False, progress: Callable[[Any], None] | None = None
) -> ModelVersion:
    """Build the config and the runtime pieces from settings and train (also used by the CLI's ``--wait``)."""
    from shared.model.factory import decode_side, embedder_from_settings
    from shared.storage import ensure_buckets
    from shared.training.service import FinetuneOptions, train_model_version
    from shared.training.trainer import TrainConfig
    from tasks.context import context

    mode = options.get("mode", "features")
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; known: {', '.join(MODES)}")
    ctx = context()
    settings = ctx.settings
    rec = settings.recognition
    embedder = embedder_from_settings(rec, cached=False)
    embedder_config = embedder.config
    known = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{k: v for k, v in options.items() if k in known})
    finetune = None
    if mode == "finetune":
        finetune = FinetuneOptions(
            blocks=int(options.get("blocks", 2)),
            device=rec.device,
            weights_path=rec.weights_path,
            cached_views=int(options.get("cached_views", 0)),
            head=bool(options.get("head", True)),
        )
    client = ctx.minio
    ensure_buckets(client, [settings.s3.models_bucket])
    return train_model_version(
        ctx.session_factory,
        client,
        embedder,
        config,
        models_bucket=settings.s3.models_bucket,
        model_store=settings.model_store,
        min_side=decode_side(embedder_config),
        feature_cache=settings.state_dir / "training-features" / embedder.cache_key(),  # features mode only
        folds=int(options.get("folds", 5)),
        rejection=rec.non_landmark_rejection,
        activate=activate,
        progress=progress,
        finetune=finetune,
    )


@shared_task(name="training.train_model", bind=True, acks_late=True)
def train_model(self: Any, options: dict[str, Any], activate: bool = False) -> dict[str, Any]:
    """Train a model version; ``options`` are :class:`shared.training.trainer.TrainConfig` fields plus ``folds``,
    ``mode``, ``blocks``, ``cached_views`` and ``head``."""

    def report(p: Any) -> None:
        self.update_state(state="PROGRESS", meta=p.as_meta())

    row = train_from_options(options, activate=activate, progress=report)
    return {"version": row.version, "status": row.status.value, "thresholds": row.thresholds}
