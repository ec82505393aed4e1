"""The broker side of operations through Celery: send recognitions in bulk, read queue depths, ping the workers.

Celery-aware (an entry-point module): the services in :mod:`shared.ops` take the ``enqueue`` callables made here.
Reading the broker needs no Celery (:mod:`workers.broker`); these wrappers take the app for its broker settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import redis
from celery import Celery
from kombu.transport.redis import PRIORITY_STEPS as KOMBU_PRIORITY_STEPS

from shared.events import CREATED, ObjectEvent
from workers import broker
from workers.broker import BrokerUnavailable, QueueDepth, priority_key

__all__ = [
    "BrokerUnavailable",
    "QueueDepth",
    "priority_key",
    "priority_steps",
    "queue_depths",
    "send_object_events",
    "send_recognitions",
    "unacked_count",
    "workers_by_queue",
]

RECOGNIZE_TASK = "recognition.recognize_photo"
INGEST_TASK = "ingest.object_event"


def priority_steps(app: Celery) -> list[int]:
    return list((app.conf.broker_transport_options or {}).get("priority_steps", KOMBU_PRIORITY_STEPS))


def _redis(app: Celery) -> redis.Redis:
    return broker.connect(app.conf.broker_url)


def queue_depths(app: Celery, queues: Iterable[str]) -> list[QueueDepth]:
    """LLEN of every queue's priority sub-lists (:func:`workers.broker.queue_depths` on the app's broker)."""
    try:
        with _redis(app) as client:
            return broker.queue_depths(client, queues, priority_steps(app))
    except redis.RedisError as exc:
        raise broker.unavailable(app.conf.broker_url, exc) from exc


def unacked_count(app: Celery) -> int:
    """Messages delivered to workers and not acknowledged yet (running or reserved)."""
    try:
        with _redis(app) as client:
            return broker.unacked_count(client)
    except redis.RedisError as exc:
        raise broker.unavailable(app.conf.broker_url, exc) from exc


def workers_by_queue(app: Celery, queues: Iterable[str], timeout: float = 1.0) -> dict[str, list[str]]:
    """Worker nodes that answered a broadcast within ``timeout``, per queue they consume (every queue listed, maybe
    empty). It always waits the whole timeout: `status` reads the heartbeats instead, unless asked to ``--ping``."""
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
