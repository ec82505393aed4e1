"""The broker side of operations: send recognitions in bulk, read queue depths, ask which workers are online.

Celery-aware (an entry-point module): the services in :mod:`shared.ops` take the ``enqueue`` callables made here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from celery import Celery
from kombu.transport.redis import PRIORITY_STEPS as KOMBU_PRIORITY_STEPS
from kombu.transport.redis import Channel

from shared.events import CREATED, ObjectEvent
from shared.ops.redact import redact_text, redact_url

RECOGNIZE_TASK = "recognition.recognize_photo"
INGEST_TASK = "ingest.object_event"
UNACKED_KEY = "unacked"  # kombu's hash of delivered, not yet acknowledged messages


class BrokerUnavailable(RuntimeError):
    """Redis (the Celery broker) did not answer."""


@dataclass(frozen=True)
class QueueDepth:
    name: str
    by_priority: dict[int, int]  # priority step -> messages waiting in that sub-list

    @property
    def total(self) -> int:
        return sum(self.by_priority.values())


def priority_steps(app: Celery) -> list[int]:
    return list((app.conf.broker_transport_options or {}).get("priority_steps", KOMBU_PRIORITY_STEPS))


def priority_key(queue: str, step: int) -> str:
    """The Redis list kombu uses for ``queue`` at ``step`` (step 0 is the queue's own name)."""
    return f"{queue}{Channel.sep}{step}" if step else queue


def _unavailable(app: Celery, exc: Exception) -> BrokerUnavailable:
    """The broker error an operator reads: its address, never its password."""
    url = app.conf.broker_url
    return BrokerUnavailable(f"the Redis broker at {redact_url(url)} is unreachable: {redact_text(str(exc), url)}")


def _redis(app: Celery) -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url, socket_timeout=3, socket_connect_timeout=3)


def queue_depths(app: Celery, queues: Iterable[str]) -> list[QueueDepth]:
    """LLEN of every queue's priority sub-lists (messages waiting, not those a worker already holds)."""
    names, steps = list(queues), priority_steps(app)
    try:
        with _redis(app) as client:
            pipe = client.pipeline()
            for name in names:
                for step in steps:
                    pipe.llen(priority_key(name, step))
            lengths = iter(pipe.execute())
    except redis.RedisError as exc:
        raise _unavailable(app, exc) from exc
    return [QueueDepth(name, {step: int(next(lengths)) for step in steps}) for name in names]


def unacked_count(app: Celery) -> int:
    """Messages delivered to workers and not acknowledged yet (running or reserved)."""
    try:
        with _redis(app) as client:
            return int(client.hlen(UNACKED_KEY))
    except redis.RedisError as exc:
        raise _unavailable(app, exc) from exc


def workers_by_queue(app: Celery, queues: Iterable[str], timeout: float = 1.0) -> dict[str, list[str]]:
    """Worker nodes that answered within ``timeout``, per queue they consume (every queue listed, maybe empty)."""
    result: dict[str, list[str]] = {name: [] for name in queues}
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    for node, active in sorted(replies.items()):
        for queue in active or []:
            result.setdefault(queue["name"], []).append(node)
    return result


def send_recognitions(
    app: Celery, photo_ids: Sequence[uuid.UUID], *, priority: int, version_id: int | None = None
) -> int:
    """One ``recognition.recognize_photo`` message per photo, over one broker connection; ``version_id`` names the
    model version the photos are meant for (the worker checks its active version at once when it differs)."""
    kwargs = {"version_id": version_id} if version_id is not None else {}
    with app.producer_or_acquire() as producer:
        for photo_id in photo_ids:
            app.send_task(RECOGNIZE_TASK, args=[str(photo_id)], kwargs=kwargs, priority=priority, producer=producer)
    return len(photo_ids)


def send_object_events(app: Celery, objects: Sequence[tuple[str, str]], *, priority: int) -> int:
    """Ingest these objects again as if their upload event had just arrived (for failures without a photo)."""
    now = datetime.now(UTC)
    with app.producer_or_acquire() as producer:
        for bucket, key in objects:
            record = ObjectEvent(CREATED, bucket, key, 0, "", None, {}, now, "landmarks:retry").to_record()
            app.send_task(INGEST_TASK, args=[record], priority=priority, producer=producer)
    return len(objects)
