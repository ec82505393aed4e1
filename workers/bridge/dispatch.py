"""Handing a normalised record to the broker: a plain callable, so sources and tests need no Celery.

A dispatch returns only once the broker took the message and raises otherwise; the sources acknowledge
(HTTP 2xx, cursor write) only after it returned, so an accepted event is never lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from celery import Celery

INGEST_TASK = "ingest.object_event"

Record = dict[str, Any]
Dispatch = Callable[[Record], None]


def celery_dispatch(app: Celery, task_name: str = INGEST_TASK) -> Dispatch:
    """Send each record as the only argument of ``task_name`` (routed to its queue by the app's routes)."""

    def dispatch(record: Record) -> None:
        app.send_task(task_name, args=[record])

    return dispatch


def logged(dispatch: Dispatch, logger: Any = None) -> Dispatch:
    """Log one line per dispatched record, after the broker accepted it."""
    log = logger if logger is not None else structlog.get_logger("landmarks.bridge")

    def dispatch_and_log(record: Record) -> None:
        dispatch(record)
        obj = record["s3"]["object"]
        log.info(
            "event.dispatched",
            event_name=record["eventName"],
            source=record["eventSource"],
            bucket=record["s3"]["bucket"]["name"],
            key=obj["key"],
            size=obj["size"],
            etag=obj["eTag"],
        )

    return dispatch_and_log
