"""celery-batches plumbing for the recognize queue's micro-batches, free of recognition itself.

A micro-batch is many per-photo messages run as one pool job (:mod:`tasks.recognition`). What that needs of
Celery lives here: whether this worker consumes the queue, a prefetch window that lets a batch fill, acks late
that survive a lost pool process, a retry of one photo of a batch as Celery's autoretry would, and each photo
of a batch reported as a run of the per-photo task (signals, result backend), so logs and metrics see photos.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from billiard.exceptions import WorkerLostError
from celery import Task, signals, states
from celery.utils.time import get_exponential_backoff_interval
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

log = structlog.get_logger(__name__)

MAX_RETRIES = 12  # a photo of a batch retried alone at most this often, as the plain task is
RETRY_BACKOFF_MAX_S = 120


def consumes_queue_of(task: Task, app: Any) -> bool:
    """Whether this worker consumes the queue the task is routed to (an ingest worker never batches it)."""
    queue = app.amqp.router.route({}, task.name).get("queue")
    name = getattr(queue, "name", queue)
    selected = app.amqp.queues.consume_from  # every queue when the worker was started without -Q
    return not selected or name in selected


def ensure_prefetch(consumer: Any, size: int) -> None:
    """Raise the worker's prefetch window to two batches when it is smaller.

    Acks late keeps a batch's messages unacknowledged until it is done, and they count against the window: with
    the fleet's default (1 per process) a batch would never fill and would leave only by the timer, one photo at
    a time. Deployments set `--prefetch-multiplier` themselves (deploy/, devtools/stack); this covers the rest.
    """
    window = consumer.initial_prefetch_count
    if not window:
        return  # 0: no limit
    need = 2 * size
    if window >= need:
        return
    processes = max(1, window // max(1, consumer.prefetch_multiplier))
    consumer.prefetch_multiplier = -(-need // processes)
    consumer.initial_prefetch_count = processes * consumer.prefetch_multiplier
    log.warning("prefetch_raised", was=window, now=consumer.initial_prefetch_count, micro_batch=size)


class MicroBatches(Batches):
    """celery-batches' task with acks late that also survives a lost pool process.

    celery-batches acknowledges a batch's messages when its pool job returns; a job whose process died never
    returns, so its messages would stay unacknowledged (and hold the prefetch window) until the worker stops.
    Here they are rejected with requeue, so another run picks them up at once.
    """

    def flush(self, requests: Sequence[Any]) -> Any:
        def acknowledge(_result: Any) -> None:
            for request in requests:
                request.acknowledge()

        def on_error(exc_info: Any) -> None:
            kind = getattr(exc_info, "type", None)  # billiard's ExceptionInfo; .exception is wrapped
            lost = isinstance(kind, type) and issubclass(kind, WorkerLostError)
            log.error("micro_batch_lost" if lost else "micro_batch_error", photos=len(requests), error=str(exc_info))
            for request in requests:
                request.reject(requeue=True) if lost else request.acknowledge()

        simple = ([SimpleRequest.from_request(r) for r in requests],)  # picklable for the prefork pool
        return self._pool.apply_async(
            apply_batches_task, (self, simple, 0, None), callback=acknowledge, error_callback=on_error
        )


@dataclass(frozen=True)
class PhotoRun:
    """How one request of a batch ended: its result, its Celery state and the exception behind a retry or failure."""

    result: dict[str, Any] | None
    state: str = states.SUCCESS
    exc: Exception | None = None


def retry(photo_task: Task, request: SimpleRequest, exc: Exception) -> PhotoRun:
    """Publish one request of a batch again after a backoff, as Celery's autoretry would (same id, retries + 1)."""
    retries = int((request.request_dict or {}).get("retries") or 0)
    if retries >= MAX_RETRIES:
        log.error("photo_retries_exhausted", photo_id=photo_id_of(request), retries=retries, error=str(exc))
        return PhotoRun(None, states.FAILURE, exc)
    countdown = get_exponential_backoff_interval(1, retries, RETRY_BACKOFF_MAX_S, full_jitter=True)
    photo_task.apply_async(
        args=request.args,
        kwargs=request.kwargs,
        task_id=request.id,
        countdown=countdown,
        retries=retries + 1,
        priority=(request.delivery_info or {}).get("priority"),
    )
    log.warning(
        "photo_retry", photo_id=photo_id_of(request), retries=retries + 1, countdown_s=countdown, error=str(exc)
    )
    return PhotoRun({"action": "retry", "countdown_s": countdown}, states.RETRY, exc)


def photo_id_of(request: SimpleRequest) -> str:
    return str(request.args[0] if request.args else request.kwargs["photo_id"])


class PhotoRuns:
    """Each request of a batch reported as a run of the per-photo task: task_prerun when the batch starts,
    task_postrun with its own result when it ends, and its result stored in the result backend.

    `workers.signals` then logs `task_started`/`task_finished` with the photo's id and counts the photo's outcome
    (`workers.metrics`) exactly as for a plain run; its duration is the batch's run time. The log context those
    handlers bind for a photo is set aside between its two signals, so the batch's own lines keep the batch's.
    """

    def __init__(self, task: Task, requests: Sequence[SimpleRequest]) -> None:
        self.task = task
        self.context: dict[str, dict[str, Any]] = {}
        for request in requests:
            with self._as_current(request):
                signals.task_prerun.send(
                    sender=task, task_id=request.id, task=task, args=request.args, kwargs=request.kwargs
                )
                self.context[request.id] = structlog.contextvars.get_contextvars()

    def finish(self, request: SimpleRequest, run: PhotoRun) -> None:
        backend = self.task.app.backend
        if not request.ignore_result:
            if run.state == states.SUCCESS:
                backend.mark_as_done(request.id, run.result, request=request)
            elif run.state == states.RETRY:
                backend.mark_as_retry(request.id, run.exc, request=request)
            else:
                backend.mark_as_failure(request.id, run.exc, request=request, call_errbacks=False)
        with self._as_current(request, self.context.pop(request.id, None)):
            signals.task_postrun.send(
                sender=self.task,
                task_id=request.id,
                task=self.task,
                args=request.args,
                kwargs=request.kwargs,
                retval=run.result,
                state=run.state,
            )

    @contextlib.contextmanager
    def _as_current(self, request: SimpleRequest, bound: dict[str, Any] | None = None) -> Iterator[None]:
        """The request as the task's current one (handlers read its queue from it), with the photo's log context
        ``bound``; afterwards the log context is what it was."""
        saved = structlog.contextvars.get_contextvars()
        if bound is not None:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**bound)
        self.task.push_request(
            id=request.id, args=request.args, kwargs=request.kwargs, delivery_info=request.delivery_info
        )
        try:
            yield
        finally:
            self.task.pop_request()
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**saved)
