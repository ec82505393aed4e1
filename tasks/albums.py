"""Tasks of the `albums` queue: the database writes of the pipeline, idempotent under redelivery."""

from __future__ import annotations

import uuid
from typing import Any

from celery import shared_task
from sqlalchemy.exc import OperationalError

from shared.errors import TransientError
from shared.gallery import mining
from shared.photos import apply
from shared.photos.failures import record_failure_if_current
from tasks.context import context

RETRYABLE = (TransientError, OperationalError)


@shared_task(
    name="albums.apply_recognition",
    acks_late=True,
    autoretry_for=RETRYABLE,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=12,
)
def apply_recognition(photo_id: str, etag: str | None, model_version_id: int, outcome: dict[str, Any]) -> str:
    ctx = context()
    with ctx.session() as session:
        result = apply.apply_recognition(session, uuid.UUID(photo_id), etag, model_version_id, outcome)
        if result == "applied" and ctx.settings.gallery.mine_uploads:  # opt-in: GPS-near uploads as candidates
            mining.mine_photo(session, uuid.UUID(photo_id), radius_km=ctx.settings.gallery.mining_radius_km)
        return result


@shared_task(
    name="albums.record_photo_failure",
    acks_late=True,
    autoretry_for=RETRYABLE,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=12,
)
def record_photo_failure(
    photo_id: str,
    task_name: str,
    task_id: str | None,
    reason: str,
    message: str,
    error_type: str | None,
    traceback: str | None,
    etag: str | None = None,
) -> str:
    """Record the failure of the content ``etag`` (a message from before etags travelled has None: it matches no
    stored content, so it is dropped and the sweep re-enqueues the photo left in processing)."""
    with context().session() as session:
        failure = record_failure_if_current(
            session,
            photo_id=uuid.UUID(photo_id),
            etag=etag,
            task_name=task_name,
            task_id=task_id,
            reason=reason,
            message=message,
            error_type=error_type,
            traceback=traceback,
        )
        return "recorded" if failure is not None else "stale"
