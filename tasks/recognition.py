"""Tasks of the `recognize` queue: fetch, decode, embed and decide; the result goes to the `albums` queue.

Every photo is one message of `recognition.recognize_photo(photo_id)`, whoever sends it (ingest, the sweep,
`landmarks reprocess`). A worker consuming the queue runs those messages in one of two ways, chosen when it starts
(:meth:`RecognizeTask.start_strategy`):

- one photo per task run (CPU workers by default): :func:`recognize_photo`, retried by Celery on transient faults;
- micro-batches (GPU workers by default, or `LANDMARKS_RECOGNITION__MICRO_BATCH`): the worker's main process
  buffers up to `micro_batch` messages for at most `micro_batch_wait_ms` (celery-batches) and hands them to a pool
  process together; :func:`recognize_batch` claims each photo and runs all of them through ONE recognizer call.

Either way each photo then goes to `albums.apply_recognition` or `albums.record_photo_failure`, and is logged
and counted per photo (the batch sends the per-photo task signals that `workers.signals` listens to).

Reliability of a micro-batch (at least once, like the plain task; every write downstream is idempotent):

- Its messages are acknowledged only after the whole batch returned (acks late). If its pool process dies
  (SIGKILL, out of memory) they are rejected with requeue, as `reject_on_worker_lost` does for the plain task.
  If the worker itself dies or shuts down, its unacknowledged messages, batched or still buffered, go back to
  Redis (at once on a warm shutdown, after the visibility timeout on a kill).
- A photo whose runs keep dying with their process (a decoder bomb, a segfault) is a poison message: every run is
  counted in PostgreSQL before it starts and closed when it ends (`photos.delivery_count`); a photo that was in a
  run that died is run alone, after the rest of its batch, and after `max_deliveries` dead runs it is failed as
  `worker_lost` when claimed instead of being run again. The plain task counts the same way.
- A transient fault (S3, PostgreSQL) of one photo retries that photo alone: its message is published again with
  the same id, `retries` + 1 and an exponential, jittered countdown (what Celery's autoretry does for the plain
  task), then the original is acknowledged with the batch. After `MAX_RETRIES` it is left to the sweep, which
  re-enqueues photos stuck in processing.
- A bad photo (undecodable, missing, too large) fails alone: it is recorded once; the others go on. Any other
  fault of one photo (S3 answering 500, a decoder bug) fails that photo's run alone, as the plain task would
  fail: acknowledged, and the sweep re-enqueues the photo after `stuck_after_s`.
- Only a fault of the whole batch (no active model, the recognizer call itself) fails every photo's run, as it
  would fail each plain task, with the same outcome.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from celery import Task, shared_task, states
from celery_batches import SimpleRequest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared.errors import PermanentError, TransientError
from shared.model.accelerator import micro_batch_size
from shared.photos import recognize
from shared.recognition.outcome import PhotoRecognizer, RecognitionOutcome
from tasks.batching import (
    MAX_RETRIES,
    RETRY_BACKOFF_MAX_S,
    MicroBatches,
    PhotoRun,
    PhotoRuns,
    consumes_queue_of,
    ensure_prefetch,
    photo_id_of,
    retry,
)
from tasks.context import WorkerContext, context

log = structlog.get_logger(__name__)

MAX_OBJECT_BYTES = 200 * 1024 * 1024
RECOGNIZE_TASK = "recognition.recognize_photo"
BATCH_TASK = "recognition.recognize_batch"
RETRYABLE = (TransientError, OperationalError)


class RecognizeTask(Task):
    """The per-photo task. In a worker that consumes its queue with micro-batching on, its messages are handed to
    :data:`recognize_batch` instead: same task name and message, so producers and metrics need no change."""

    def start_strategy(self, app: Any, consumer: Any, **kwargs: Any) -> Any:
        # Runs in the worker's main process when it starts consuming (and only there).
        size = micro_batch_size(context().settings.recognition) if consumes_queue_of(self, app) else 1
        if size <= 1:
            return super().start_strategy(app, consumer, **kwargs)
        batch = app.tasks[BATCH_TASK]
        batch.flush_every = size
        batch.flush_interval = context().settings.recognition.micro_batch_wait_ms / 1e3
        ensure_prefetch(consumer, size)
        log.info("micro_batching", task=self.name, flush_every=size, flush_interval_s=batch.flush_interval)
        return batch.start_strategy(app, consumer, **kwargs)


@shared_task(
    name=RECOGNIZE_TASK,
    base=RecognizeTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=RETRYABLE,
    retry_backoff=True,
    retry_backoff_max=RETRY_BACKOFF_MAX_S,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def recognize_photo(self: Any, photo_id: str, version_id: int | None = None) -> dict[str, Any]:
    """``version_id``: the model version the sender meant (reprocess jobs name it); see WorkerContext.recognizer."""
    ctx = context()
    pid = uuid.UUID(photo_id)
    # The model first: one that kills its worker on load is no photo's fault, and a photo not yet claimed is left
    # to the sweep like a claimed one. Then the claim and the run's count share one transaction (one round trip
    # fewer a photo than two).
    version_id, recognizer = ctx.recognizer(expected=version_id)
    with ctx.session() as session:
        ref = claim(session, pid, ctx, task_id=self.request.id)
        if ref is not None:
            recognize.begin_runs(session, [pid])
    if ref is None:
        return {"action": "skipped"}
    try:
        result = recognize_or_fail(ctx, recognizer, ref)
    finally:  # not reached when the process dies: then the run stays counted
        # Before the result is sent on: the albums transaction locks the photo's row, and this update would wait
        # for it (~7 ms a photo on 2 cores, py-spy of one worker). Sending a message is no run that can die of
        # the photo.
        end_runs(ctx, [pid])
    return deliver(photo_id, ref, version_id, result, task_name=self.name, task_id=self.request.id)


def recognize_or_fail(
    ctx: WorkerContext, recognizer: PhotoRecognizer, ref: recognize.PhotoRef
) -> RecognitionOutcome | PermanentError:
    """One photo's outcome, or the permanent failure to record for it (anything else is raised)."""
    try:
        return recognize.recognize_object(
            ctx.minio,
            recognizer,
            ref,
            max_bytes=MAX_OBJECT_BYTES,
            max_pixels=ctx.settings.recognition.max_pixels,
            max_decode_bytes=ctx.settings.recognition.max_decode_bytes,
        )
    except PermanentError as exc:
        return exc


def claim(
    session: Session, photo_id: uuid.UUID, ctx: WorkerContext, *, task_id: str | None
) -> recognize.PhotoRef | None:
    """claim_photo with this fleet's limit on runs that died with their worker."""
    return recognize.claim_photo(
        session,
        photo_id,
        max_deliveries=ctx.settings.recognition.max_deliveries,
        task_name=RECOGNIZE_TASK,
        task_id=task_id,
    )


def end_runs(ctx: WorkerContext, photo_ids: Sequence[uuid.UUID]) -> None:
    """Close the photos' runs; a database that fails here costs them one counted run, never the result."""
    try:
        with ctx.session() as session:
            recognize.end_runs(session, photo_ids)
    except RETRYABLE as exc:
        log.warning("end_runs_failed", photos=len(photo_ids), error=str(exc))


@shared_task(name=BATCH_TASK, base=MicroBatches, bind=True, acks_late=True)
def recognize_batch(self: Any, requests: list[SimpleRequest]) -> dict[str, Any]:
    """Run a micro-batch of `recognition.recognize_photo` messages; never sent as a message of its own."""
    photo_task = self.app.tasks[RECOGNIZE_TASK]
    runs = PhotoRuns(photo_task, requests)
    try:
        ended = run_batch(context(), photo_task, requests)
    except Exception as exc:
        log.exception("micro_batch_failed", photos=len(requests))
        for request in requests:
            runs.finish(request, PhotoRun(None, states.FAILURE, exc))
        raise
    for request in requests:
        runs.finish(request, ended[request.id])
    states_seen = [run.state for run in ended.values()]
    return {"photos": len(requests), **{state.lower(): states_seen.count(state) for state in set(states_seen)}}


def run_batch(ctx: WorkerContext, photo_task: Task, requests: Sequence[SimpleRequest]) -> dict[str, PhotoRun]:
    """Request id -> how it ended. Each photo fails or is retried alone; only a fault of the batch as a whole (no
    active model, the recognizer call itself) raises.

    The same photo twice in one batch (a replayed event) is recognised once; both requests get its result.
    """
    groups: dict[str, list[SimpleRequest]] = {}
    for request in requests:
        groups.setdefault(photo_id_of(request), []).append(request)
    out: dict[str, PhotoRun] = {}

    def settle(photo_id: str, result: dict[str, Any] | None = None, exc: Exception | None = None) -> None:
        if exc is not None and not isinstance(exc, RETRYABLE):
            log.error("photo_error", photo_id=photo_id, error=repr(exc), exc_info=exc)
        for request in groups[photo_id]:
            if exc is None:
                out[request.id] = PhotoRun(result)
            elif isinstance(exc, RETRYABLE):
                out[request.id] = retry(photo_task, request, exc)
            else:  # as a plain run that raised: failed, acknowledged, left to the sweep
                out[request.id] = PhotoRun(None, states.FAILURE, exc)

    refs: dict[str, recognize.PhotoRef] = {}
    for photo_id in groups:
        try:
            with ctx.session() as session:
                ref = claim(session, uuid.UUID(photo_id), ctx, task_id=groups[photo_id][0].id)
        except Exception as exc:
            settle(photo_id, exc=exc)
            continue
        if ref is None:
            settle(photo_id, {"action": "skipped"})
        else:
            refs[photo_id] = ref
    if not refs:
        return out
    try:
        version_id, recognizer = ctx.recognizer(expected=expected_version(requests))
    except RETRYABLE as exc:
        for photo_id in refs:
            settle(photo_id, exc=exc)
        return out

    def recognize_together(ids: list[str]) -> None:
        pids = [uuid.UUID(p) for p in ids]
        try:
            with ctx.session() as session:
                recognize.begin_runs(session, pids)
        except Exception as exc:
            for photo_id in ids:
                settle(photo_id, exc=exc)
            return
        try:
            outcomes = recognize.recognize_objects(
                ctx.minio,
                recognizer,
                [refs[p] for p in ids],
                max_bytes=MAX_OBJECT_BYTES,
                max_pixels=ctx.settings.recognition.max_pixels,
                max_decode_bytes=ctx.settings.recognition.max_decode_bytes,
                threads=ctx.decode_threads,
            )
        finally:  # not reached when the process dies: then the runs stay counted
            end_runs(ctx, pids)  # before the results go on, whose albums transactions lock the rows (as above)
        for photo_id, outcome in zip(ids, outcomes, strict=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, PermanentError):
                settle(photo_id, exc=outcome)
                continue
            first = groups[photo_id][0].id
            try:
                result = deliver(photo_id, refs[photo_id], version_id, outcome, task_name=RECOGNIZE_TASK, task_id=first)
            except Exception as exc:
                settle(photo_id, exc=exc)
                continue
            settle(photo_id, result)

    # A photo that was in a run that died may be what killed it: the others go first, together, then each such
    # photo alone (the least suspect first), so one poison photo never takes the rest of its batch with it again.
    fresh = [p for p in refs if refs[p].deliveries == 0]
    suspects = sorted((p for p in refs if refs[p].deliveries), key=lambda p: refs[p].deliveries)
    if suspects:
        log.warning("micro_batch_suspects", photos=suspects, fresh=len(fresh))
    for ids in ([fresh] if fresh else []) + [[p] for p in suspects]:
        recognize_together(ids)
    return out


def expected_version(requests: Sequence[SimpleRequest]) -> int | None:
    """The newest model version the batch's messages name (none: the worker's cached active version will do)."""
    named = [v for v in ((r.kwargs or {}).get("version_id") for r in requests) if v is not None]
    return max(named) if named else None


def deliver(
    photo_id: str,
    ref: recognize.PhotoRef,
    version_id: int,
    result: RecognitionOutcome | PermanentError,
    *,
    task_name: str,
    task_id: str | None,
) -> dict[str, Any]:
    """Send a recognised photo to the albums queue, or record its permanent failure (once, with the reason)."""
    from tasks.albums import apply_recognition, record_photo_failure

    if isinstance(result, PermanentError):
        record_photo_failure.delay(
            photo_id,
            task_name,
            task_id,
            result.reason,
            str(result),
            type(result.__cause__ or result).__name__,
            "".join(traceback.format_exception(result, limit=5)),
            etag=ref.etag,  # applied only while the photo still holds this content
        )
        log.warning("photo_failed", photo_id=photo_id, reason=result.reason, error=str(result))
        return {"action": "failed", "reason": result.reason}
    apply_recognition.delay(photo_id, ref.etag, version_id, result.to_json())
    best = result.matches[0] if result.matches else None
    batch_size = result.meta.get("batch_size", 1)
    log.info(
        "photo_recognized",
        photo_id=photo_id,
        landmark=best.landmark if best else None,
        score=best.score if best else None,
        batch_size=batch_size,
        **{f"{k}_ms": round(v, 1) for k, v in result.timings_ms.items()},
    )
    return {"action": "recognized", "landmark": best.landmark if best else None, "batch_size": batch_size}
