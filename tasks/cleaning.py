"""Celery tasks of the `cleaning` queue: gallery cleaning, low priority, never in the way of uploads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from celery import shared_task
from minio import Minio
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import TransientError
from shared.gallery import cleaning
from shared.recognition.recognizer import EmbedsImages
from shared.settings import RecognitionSettings, Settings
from tasks.context import context

log = structlog.get_logger(__name__)


def embedder_for(rec: RecognitionSettings) -> tuple[EmbedsImages, int]:
    """The backbone embedder of the settings (what `model build` embeds with) and its decode size, made once
    per process by the model factory; the network itself loads on first use."""
    from shared.model.factory import decode_side, embedder_from_settings

    embedder = embedder_from_settings(rec)
    return embedder, decode_side(embedder.config)


def run_cleaning(
    settings: Settings,
    factory: sessionmaker[Session],
    client: Minio,
    *,
    landmark: str | None = None,
    include_rejected: bool = False,
    progress: Callable[[int], None] | None = None,
) -> cleaning.CleaningReport:
    """What the task and `landmarks gallery clean --wait` both run, with the settings' threshold and model."""
    embedder, min_side = embedder_for(settings.recognition)
    return cleaning.clean_gallery(
        factory,
        client,
        embedder,
        max_distance=settings.gallery.cleaning_max_distance,
        min_side=min_side,
        n_auto_references=settings.gallery.auto_references,
        landmark=landmark,
        include_rejected=include_rejected,
        batch_size=settings.recognition.batch_size,
        progress=progress,
    )


@shared_task(
    name="cleaning.clean_gallery",
    acks_late=True,
    autoretry_for=(TransientError, OperationalError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=6,
)
def clean_gallery(landmark: str | None = None, include_rejected: bool = False) -> dict[str, Any]:
    """Clean the gallery (or one landmark); the report is the task's result. Replaying it is harmless."""
    ctx = context()
    report = run_cleaning(
        ctx.settings, ctx.session_factory, ctx.minio, landmark=landmark, include_rejected=include_rejected
    )
    log.info(
        "gallery_cleaned", landmark=landmark, kept=report.kept, rejected=report.rejected, withdrawn=report.withdrawn
    )
    return report.to_dict()
