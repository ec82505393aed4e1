"""The Celery broker's Redis read and written without Celery: queue depths, messages in flight, worker heartbeats.

`landmarks status` and the metrics endpoint only read the broker. Importing Celery to do it, and broadcasting a
ping that waits its whole timeout for replies, were most of the time `status` took (issue 21), so this module
knows kombu's Redis layout itself (checked against kombu by tests/unit/test_broker.py) and workers publish a
heartbeat instead of being pinged: each running worker keeps a key with a TTL (``landmarks:worker:<node>``: the
queues it consumes) refreshed every ``worker_heartbeat_s`` and named in one set (``landmarks:workers``), so the
fleet is read in two round trips. A worker that stops deletes its key; one that is killed drops out when its key
expires (three missed beats).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from shared.ops.redact import redact_text, redact_url

KOMBU_SEP = "\x06\x16"  # kombu.transport.redis.Channel.sep: "<queue><sep><step>" is a priority step's list
UNACKED_KEY = "unacked"  # kombu's hash of delivered, not yet acknowledged messages
WORKERS_KEY = "landmarks:workers"  # the set of worker nodes that published a heartbeat
WORKER_KEY_PREFIX = "landmarks:worker:"  # + node: JSON {"queues": [...]}, expiring unless refreshed
MISSED_BEATS = 3  # a worker's key outlives this many beat intervals


class BrokerUnavailable(RuntimeError):
    """Redis (the Celery broker) did not answer."""


@dataclass(frozen=True)
class QueueDepth:
    name: str
    by_priority: dict[int, int]  # priority step -> messages waiting in that sub-list

    @property
    def total(self) -> int:
        return sum(self.by_priority.values())


def connect(url: str, timeout: float = 3.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def unavailable(url: str, exc: Exception) -> BrokerUnavailable:
    """The broker error an operator reads: its address, never its password."""
    return BrokerUnavailable(f"the Redis broker at {redact_url(url)} is unreachable: {redact_text(str(exc), url)}")


def priority_key(queue: str, step: int) -> str:
    """The Redis list kombu uses for ``queue`` at ``step`` (step 0 is the queue's own name)."""
    return f"{queue}{KOMBU_SEP}{step}" if step else queue


def queue_depths(client: redis.Redis, queues: Iterable[str], steps: Sequence[int]) -> list[QueueDepth]:
    """LLEN of every queue's priority sub-lists (messages waiting, not those a worker already holds)."""
    names = list(queues)
    pipe = client.pipeline(transaction=False)
    for name in names:
        for step in steps:
            pipe.llen(priority_key(name, step))
    lengths = iter(pipe.execute())
    return [QueueDepth(name, {step: int(next(lengths)) for step in steps}) for name in names]


def unacked_count(client: redis.Redis) -> int:
    """Messages delivered to workers and not acknowledged yet (running or reserved)."""
    return int(client.hlen(UNACKED_KEY))


def worker_key(node: str) -> str:
    return WORKER_KEY_PREFIX + node


def beat(client: redis.Redis, node: str, queues: Iterable[str], interval_s: float) -> None:
    """Say ``node`` is alive and consumes ``queues`` for the next ``MISSED_BEATS`` intervals."""
    ttl_ms = max(1, round(interval_s * MISSED_BEATS * 1000))
    pipe = client.pipeline(transaction=True)
    pipe.set(worker_key(node), json.dumps({"queues": sorted(set(queues))}), px=ttl_ms)
    pipe.sadd(WORKERS_KEY, node)
    pipe.pexpire(WORKERS_KEY, ttl_ms)  # the set too goes once no worker beats (a whole fleet killed)
    pipe.execute()


def forget(client: redis.Redis, node: str) -> None:
    """The worker stopped: it leaves the fleet now rather than when its key expires."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(worker_key(node))
    pipe.srem(WORKERS_KEY, node)
    pipe.execute()


def workers_online(client: redis.Redis, queues: Iterable[str]) -> dict[str, list[str]]:
    """Worker nodes with a live heartbeat, per queue they consume (every queue in ``queues`` listed, maybe empty).

    Names whose key expired (killed workers) are dropped from the set on the way.
    """
    result: dict[str, list[str]] = {name: [] for name in queues}
    nodes = sorted(n.decode() if isinstance(n, bytes) else n for n in client.smembers(WORKERS_KEY))
    if not nodes:
        return result
    values = client.mget([worker_key(node) for node in nodes])
    gone = []
    for node, raw in zip(nodes, values, strict=True):
        if raw is None:
            gone.append(node)
            continue
        try:
            consumed = json.loads(raw).get("queues") or []
        except (ValueError, AttributeError):
            continue
        for queue in consumed:
            result.setdefault(queue, []).append(node)
    if gone:
        client.eval(FORGET_EXPIRED, 1 + len(gone), WORKERS_KEY, *map(worker_key, gone), *gone)
    return result


# Drop a node from the set only if its key is still missing: a worker that beat again meanwhile stays listed.
FORGET_EXPIRED = """
for i, node in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then redis.call('SREM', KEYS[1], node) end
end
return 0
"""
