"""Celery signal handlers: JSON logging, per-task log context, metrics and task durations.

Connected when :mod:`workers.celery_app` imports this module, so every worker (and beat) gets them. Task
handlers run in the pool child that runs the task; ``worker_init`` runs once in the worker's main process.
"""

from __future__ import annotations

import inspect
import time
from functools import cache
from typing import Any

import structlog
from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import setup_logging, task_failure, task_postrun, task_prerun, worker_init

from workers import metrics
from workers.logging import bind_task, clear_task, configure_logging

log = structlog.get_logger("landmarks.tasks")

RECOGNIZE_TASK = "recognition.recognize_photo"
INGEST_TASK = "ingest.object_event"
ALBUMS_TASK = "albums.apply_recognition"
_started: dict[str, float] = {}


@setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery skips its own logging setup when this signal has a receiver (``worker_hijack_root_logger=False``)."""
    configure_logging(loglevel or "INFO", bool(current_app.conf.get("landmarks_log_json", True)))


@worker_init.connect
def _enable_metrics(sender: Any = None, **_: Any) -> None:
    directory = sender.app.conf.get("landmarks_metrics_dir") if sender is not None else None
    if directory:
        metrics.enable_multiprocess(directory)


@cache
def _signature(task_name: str, run: Any) -> inspect.Signature | None:
    """The task's signature when it takes a ``photo_id`` (tasks pass ids, not objects); cached per task."""
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError):
        return None
    return signature if "photo_id" in signature.parameters else None


def photo_id_of(task: Any, args: tuple | list | None, kwargs: dict | None) -> str | None:
    signature = _signature(task.name, task.run)
    if signature is None:
        return None
    try:
        value = signature.bind_partial(*(args or ()), **(kwargs or {})).arguments.get("photo_id")
    except TypeError:
        return None
    return str(value) if value is not None else None


def queue_of(task: Any) -> str | None:
    info = getattr(task.request, "delivery_info", None) or {}
    return info.get("routing_key") or info.get("queue")


@task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any):
    bind_task(task_id=task_id, task=task.name, queue=queue_of(task), photo_id=photo_id_of(task, args, kwargs))
    if task_id is not None:
        _started[task_id] = time.perf_counter()
    log.info("task_started")


@task_postrun.connect
def _task_finished(
    task_id: str | None = None, task: Any = None, retval: Any = None, state: str | None = None, **_: Any
) -> None:
    started = _started.pop(task_id, None) if task_id is not None else None
    seconds = time.perf_counter() - started if started is not None else None
    state_name = (state or "unknown").lower()
    try:
        log.info(
            "task_finished",
            state=state_name,
            duration_ms=round(seconds * 1e3, 1) if seconds is not None else None,
            action=retval.get("action") if isinstance(retval, dict) else None,
        )
        m = metrics.metrics()
        m.task_finished(task=task.name, queue=queue_of(task) or "unknown", state=state_name, seconds=seconds)
        if task.name == RECOGNIZE_TASK and state == "SUCCESS":
            m.photo_outcome(retval, seconds)
        elif task.name == INGEST_TASK and state == "SUCCESS":
            m.object_event(retval)
        elif task.name == ALBUMS_TASK and state == "SUCCESS":
            m.album_write(retval)
    finally:
        clear_task()


@task_failure.connect
def _record_time_limit(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    """A task past its soft time limit is a recorded failure (``time_limit``), its photo failed with it: otherwise
    the sweep would hand the photo to the next worker, and the next, each time for the whole limit."""
    if not isinstance(exception, SoftTimeLimitExceeded) or sender is None:
        return
    import uuid

    from shared.photos.failures import record_time_limit
    from tasks.context import context

    photo_id = photo_id_of(sender, args, kwargs)
    with context().session() as session:
        record_time_limit(
            session,
            task_name=sender.name,
            task_id=task_id,
            soft_limit_s=getattr(sender, "soft_time_limit", None),
            photo_id=uuid.UUID(photo_id) if photo_id else None,
        )
    log.error("task_time_limit", photo_id=photo_id, soft_limit_s=getattr(sender, "soft_time_limit", None))
