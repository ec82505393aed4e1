"""Tasks of the `ingest` queue: turn object events into photo rows and route them; the reconciliation sweep."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from celery import shared_task
from celery.signals import worker_process_init
from sqlalchemy.exc import OperationalError

from shared.errors import TransientError
from shared.events import ObjectEvent
from shared.ops import sweep
from shared.photos import records as photos
from shared.photos.failures import record_failure
from shared.storage import ObjectMissing, object_exists, stat_object
from shared.versions import registry
from tasks.context import context
from tasks.priorities import REPROCESS_PRIORITY

log = structlog.get_logger(__name__)

RETRYABLE = (TransientError, OperationalError)


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
        if object_exists(ctx.minio, event.bucket, event.key):
            # A replayed delete, or one overtaken by a re-upload: the object is there, so the photo stays.
            log.info("object_removed_but_present", bucket=event.bucket, key=event.key)
            return {"action": "ignored", "reason": "object exists"}
        with ctx.session() as session:
            result = photos.record_removed(session, bucket=event.bucket, key=event.key, sequencer=event.sequencer)
        log.info("object_removed", bucket=event.bucket, key=event.key, action=result.action)
        return {"action": result.action}
    # The object itself decides owner and content, never the event body: a forged or stale event's metadata and
    # etag would otherwise file someone else's photo (the webhook is reachable by whoever holds its token). A sweep
    # event's object may also have been deleted since it was listed: its row must stay deleted.
    try:
        info = stat_object(ctx.minio, event.bucket, event.key)
    except ObjectMissing as exc:
        if event.source == sweep.SWEEP_SOURCE:
            return {"action": "ignored", "reason": "object gone since the sweep listed it"}
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
            sequencer=event.sequencer,
        )
        # Read after the row: a photo created after `model activate V --reprocess`'s job is left to this path, so
        # its message names V too and a worker still caching the old version looks the active one up at once.
        version = registry.active_version(session) if result.action == "recognize" else None
    if result.action == "recognize":  # after the commit that created the row
        recognize_photo.delay(str(result.photo_id), version_id=version.id if version is not None else None)
    log.info(
        "object_created",
        bucket=event.bucket,
        key=event.key,
        photo_id=str(result.photo_id),
        action=result.action,
    )
    return {"action": result.action, "photo_id": str(result.photo_id) if result.photo_id else None}


def reconcile_bucket(bucket: str) -> dict[str, Any]:
    """The sweep (:func:`shared.ops.sweep.reconcile_bucket`), its events and requeues sent through Celery."""
    from tasks.recognition import recognize_photo

    ctx = context()
    settings = ctx.settings

    def requeue(photo_ids: Sequence[Any]) -> None:
        for photo_id in photo_ids:
            # Behind fresh uploads: during a reprocessing backlog these may simply be waiting their turn.
            recognize_photo.apply_async(args=[str(photo_id)], priority=REPROCESS_PRIORITY)

    report = sweep.reconcile_bucket(
        ctx.session_factory,
        ctx.minio,
        bucket,
        send_event=lambda record: object_event.delay(record),
        requeue=requeue,
        page_size=settings.sweep_page_size,
        max_delete_share=settings.sweep_max_delete_share,
        stuck_after_s=settings.stuck_after_s,
    )
    log.info("reconciled", bucket=bucket, **report.summary())
    return report.summary()


@shared_task(name="ingest.reconcile", acks_late=True, autoretry_for=RETRYABLE, retry_backoff=True, max_retries=5)
def reconcile(bucket: str | None = None) -> dict[str, Any]:
    """The sweep that makes a lost event never mean a lost photo (Celery beat runs it every few minutes)."""
    return reconcile_bucket(bucket or context().settings.s3.photos_bucket)
