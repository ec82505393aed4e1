"""Tasks of the `ingest` queue: turn object events into photo rows and route them; the reconciliation sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from celery import shared_task
from celery.signals import worker_process_init
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from shared import photos
from shared.errors import TransientError
from shared.events import CREATED, ObjectEvent
from shared.failures import record_failure
from shared.storage import ObjectMissing, list_objects, stat_object
from tasks.context import context
from tasks.priorities import REPROCESS_PRIORITY

log = structlog.get_logger(__name__)

RETRYABLE = (TransientError, OperationalError)
RECONCILE_PAGE = 500


@worker_process_init.connect
def _reset_pool(**_: Any) -> None:
    context().reset_after_fork()


@shared_task(
    name="ingest.object_event",
    bind=True,
    acks_late=True,
    autoretry_for=RETRYABLE,
    retry_backoff=True,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=12,
)
def object_event(self: Any, record: dict[str, Any]) -> dict[str, Any]:
    """One normalised S3 notification record: create/update or delete the photo, then enqueue recognition."""
    from tasks.recognition import recognize_photo

    ctx = context()
    event = ObjectEvent.from_record(record)
    if event.bucket != ctx.settings.s3.photos_bucket:
        # The filer stream carries every bucket (gallery photos, model bundles): only uploads are photos.
        return {"action": "ignored", "reason": "not the photos bucket"}
    if event.is_removed:
        with ctx.session() as session:
            result = photos.record_removed(session, bucket=event.bucket, key=event.key)
        log.info("object_removed", bucket=event.bucket, key=event.key, action=result.action)
        return {"action": result.action}
    # The object itself decides owner and content, never the event body: a forged or stale event's metadata and
    # etag would otherwise file someone else's photo (the webhook is reachable by whoever holds its token).
    try:
        info = stat_object(ctx.minio, event.bucket, event.key)
    except ObjectMissing as exc:
        with ctx.session() as session:
            record_failure(
                session,
                task_name=self.name,
                task_id=self.request.id,
                reason="object_missing",
                message=str(exc),
                bucket=event.bucket,
                key=event.key,
            )
        return {"action": "failed", "reason": "object_missing"}
    ownership = photos.decide_owner(event.key, info.metadata)
    with ctx.session() as session:
        result = photos.record_created(
            session,
            bucket=event.bucket,
            key=event.key,
            etag=info.etag,
            size=info.size,
            content_type=info.content_type,
            owner=ownership.owner,
            task_name=self.name,
            ownership=ownership,
        )
    if result.action == "recognize":
        recognize_photo.delay(str(result.photo_id))  # after the commit that created the row
    log.info(
        "object_created",
        bucket=event.bucket,
        key=event.key,
        photo_id=str(result.photo_id),
        action=result.action,
    )
    return {"action": result.action, "photo_id": str(result.photo_id) if result.photo_id else None}


def reconcile_bucket(bucket: str) -> dict[str, int]:
    """List the bucket: enqueue objects without a photo row, mark rows without an object deleted (a lost delete
    event), and re-enqueue photos whose task was lost."""
    from tasks.recognition import recognize_photo

    ctx = context()
    enqueued = listed = 0
    page: list[str] = []
    seen: set[str] = set()
    with ctx.session() as session:
        started = session.execute(select(func.now())).scalar_one()  # the database's clock, like created_at

    def flush() -> int:
        with ctx.session() as session:
            missing = photos.keys_without_rows(session, bucket, page)
        for key in missing:
            event = ObjectEvent(CREATED, bucket, key, 0, "", None, {}, datetime.now(UTC), "landmarks:reconcile")
            object_event.delay(event.to_record())
        page.clear()
        return len(missing)

    for info in list_objects(ctx.minio, bucket):
        listed += 1
        page.append(info.key)
        seen.add(info.key)
        if len(page) >= RECONCILE_PAGE:
            enqueued += flush()
    enqueued += flush()
    with ctx.session() as session:
        gone = photos.keys_missing_from_listing(session, bucket, seen, listed_since=started)
        for key in gone:  # their delete event was lost: same outcome as the event
            photos.record_removed(session, bucket=bucket, key=key)
    with ctx.session() as session:
        stuck = photos.stuck_photo_ids(session, older_than=timedelta(seconds=ctx.settings.stuck_after_s))
    for photo_id in stuck:
        # Behind fresh uploads: during a reprocessing backlog these may simply be waiting their turn.
        recognize_photo.apply_async(args=[str(photo_id)], priority=REPROCESS_PRIORITY)
    log.info("reconciled", bucket=bucket, listed=listed, enqueued=enqueued, removed=len(gone), requeued=len(stuck))
    return {"listed": listed, "enqueued": enqueued, "removed": len(gone), "requeued": len(stuck)}


@shared_task(name="ingest.reconcile", acks_late=True, autoretry_for=RETRYABLE, retry_backoff=True, max_retries=5)
def reconcile(bucket: str | None = None) -> dict[str, int]:
    """The sweep that makes a lost event never mean a lost photo (Celery beat runs it every few minutes)."""
    return reconcile_bucket(bucket or context().settings.s3.photos_bucket)
