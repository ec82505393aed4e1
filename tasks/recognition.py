"""Tasks of the `recognize` queue: fetch, decode, embed and decide; the result goes to the `albums` queue."""

from __future__ import annotations

import traceback
import uuid
from typing import Any

import structlog
from celery import shared_task
from sqlalchemy.exc import OperationalError

from shared import pipeline
from shared.errors import PermanentError, TransientError
from tasks.context import context

log = structlog.get_logger(__name__)

MAX_OBJECT_BYTES = 200 * 1024 * 1024


@shared_task(
    name="recognition.recognize_photo",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TransientError, OperationalError),
    retry_backoff=True,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=12,
)
def recognize_photo(self: Any, photo_id: str) -> dict[str, Any]:
    from tasks.albums import apply_recognition, record_photo_failure

    ctx = context()
    pid = uuid.UUID(photo_id)
    with ctx.session() as session:
        ref = pipeline.claim_photo(session, pid)
    if ref is None:
        return {"action": "skipped"}
    version_id, recognizer = ctx.recognizer()
    try:
        outcome = pipeline.recognize_object(
            ctx.minio,
            recognizer,
            ref,
            max_bytes=MAX_OBJECT_BYTES,
            max_pixels=ctx.settings.recognition.max_pixels,
        )
    except PermanentError as exc:
        record_photo_failure.delay(
            photo_id,
            self.name,
            self.request.id,
            exc.reason,
            str(exc),
            type(exc.__cause__ or exc).__name__,
            traceback.format_exc(limit=5),
        )
        log.warning("photo_failed", photo_id=photo_id, reason=exc.reason, error=str(exc))
        return {"action": "failed", "reason": exc.reason}
    apply_recognition.delay(photo_id, ref.etag, version_id, outcome.to_json())
    best = outcome.matches[0] if outcome.matches else None
    log.info(
        "photo_recognized",
        photo_id=photo_id,
        landmark=best.landmark if best else None,
        score=best.score if best else None,
        **{f"{k}_ms": round(v, 1) for k, v in outcome.timings_ms.items()},
    )
    return {"action": "recognized", "landmark": best.landmark if best else None}
