"""Each worker's heartbeat in the broker's Redis, so `landmarks status` and ``/metrics`` see the fleet without a
broadcast ping (:mod:`workers.broker` reads it).

A consumer bootstep, like Celery's own event heartbeat (``celery.worker.consumer.heart``): it beats on the worker's
timer, in the main process's event loop, so a worker whose loop is stuck stops beating just as it would stop
answering a ping. It writes the queues the consumer is subscribed to at each beat (``add_consumer`` and
``cancel_consumer`` show at the next one), and deletes its key when the consumer stops.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
import structlog
from celery import bootsteps

from workers import broker

log = structlog.get_logger("landmarks.heartbeat")

DEFAULT_INTERVAL_S = 5.0


class Heartbeat(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_entry: Any = None
        self._client: redis.Redis | None = None

    def start(self, c: Any) -> None:
        interval = float(c.app.conf.get("landmarks_worker_heartbeat_s") or DEFAULT_INTERVAL_S)
        self._client = broker.connect(c.app.conf.broker_url, timeout=min(2.0, interval))
        self.beat(c, interval)
        self._timer_entry = c.timer.call_repeatedly(interval, self.beat, (c, interval), priority=10)

    def beat(self, c: Any, interval: float) -> None:
        queues = [queue.name for queue in (getattr(c.task_consumer, "queues", None) or [])]
        try:
            broker.beat(self._client, c.hostname, queues, interval)
        except redis.RedisError as exc:  # the consumer notices a lost broker itself; status shows the gap
            log.warning("heartbeat_failed", error=broker.unavailable(c.app.conf.broker_url, exc).args[0])

    def stop(self, c: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None
        if self._client is not None:
            with contextlib.suppress(redis.RedisError):  # else the key expires on its own
                broker.forget(self._client, c.hostname)
            self._client.close()
            self._client = None

    shutdown = stop
