"""The reprocess feeder: beat runs it every few seconds on the ingest queue; it tops the recognize queue up from
the running jobs (shared.ops.jobs) and returns, so no message is long-lived and a restart loses nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from celery import current_app, shared_task
from sqlalchemy.exc import OperationalError

from shared.errors import TransientError
from shared.ops import jobs
from tasks.context import context
from workers.fleet import send_recognitions

log = structlog.get_logger(__name__)

RECOGNIZE_QUEUE = "recognize"


def recognize_queue_depth() -> int:
    """Messages waiting on the recognize queue, every priority together (kombu sums the sub-lists)."""
    with current_app.connection_for_read() as connection:
        return int(connection.default_channel.queue_declare(RECOGNIZE_QUEUE).message_count)


def sender(priority: int):
    """The feeder's ``enqueue``: :func:`workers.fleet.send_recognitions` on this worker's app at ``priority``."""

    def enqueue(photo_ids: Sequence[uuid.UUID], *, version_id: int | None = None) -> None:
        send_recognitions(current_app, photo_ids, priority=priority, version_id=version_id)

    return enqueue


@shared_task(
    name="ingest.feed_reprocess",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(TransientError, OperationalError),
    retry_backoff=True,
    max_retries=3,
)
def feed_reprocess() -> list[dict[str, Any]]:
    """One feeding round; a round still running when the next beat fires finds its jobs locked and skips them."""
    ctx = context()
    results = jobs.feed_all(
        ctx.session_factory,
        depth=recognize_queue_depth,
        enqueue_for=sender,
        bound=ctx.settings.reprocess_queue_bound,
    )
    for result in results:
        if result.sent or result.outcome == "finished":
            log.info("reprocess_fed", job_id=result.job_id, outcome=result.outcome, sent=result.sent)
    return [{"job_id": r.job_id, "outcome": r.outcome, "sent": r.sent} for r in results]
