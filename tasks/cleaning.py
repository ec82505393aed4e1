"""Celery tasks of the `cleaning` queue: gallery cleaning, low priority, never in the way of uploads."""

from __future__ import annotations

from typing import Any

import structlog
from celery import shared_task
from sqlalchemy.exc import OperationalError

from shared.errors import TransientError
from shared.gallery.cleaning import run_cleaning
from tasks.context import context

log = structlog.get_logger(__name__)


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
