"""The broker read without Celery (`landmarks status`, /metrics): kombu's Redis layout and the heartbeat keys."""

from __future__ import annotations

import json
from typing import Any

from kombu.transport.redis import Channel

from workers import broker
from workers.queues import PRIORITY_STEPS, QUEUES


def test_the_layout_is_kombus() -> None:
    """Status reads kombu's lists by name: the separator must be the one kombu writes with."""
    assert Channel.sep == broker.KOMBU_SEP
    assert broker.priority_key("recognize", 0) == "recognize"
    assert broker.priority_key("recognize", 9) == "recognize" + Channel.sep + "9"


def test_the_celery_app_routes_by_the_same_queues_and_steps() -> None:
    from workers.celery_app import app

    assert [q.name for q in app.conf.task_queues] == list(QUEUES)
    assert app.conf.broker_transport_options["priority_steps"] == PRIORITY_STEPS


class _Pipeline:
    def __init__(self, client: _Client) -> None:
        self.client, self.calls = client, []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def execute(self) -> list[Any]:
        return [getattr(self.client, name)(*args, **kwargs) for name, args, kwargs in self.calls]


class _Client:
    """Just the Redis commands the module uses, over dicts (keys "expire" when the test deletes them)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sets: dict[str, set[str]] = {}
        self.lists: dict[str, int] = {}
        self.ttls: dict[str, int] = {}

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self)

    def set(self, key: str, value: str, px: int) -> None:
        self.values[key], self.ttls[key] = value, px

    def sadd(self, key: str, *members: str) -> None:
        self.sets.setdefault(key, set()).update(members)

    def pexpire(self, key: str, ms: int) -> None:
        self.ttls[key] = ms

    def srem(self, key: str, *members: str) -> None:
        self.sets.get(key, set()).difference_update(members)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def smembers(self, key: str) -> set[bytes]:
        return {m.encode() for m in self.sets.get(key, set())}

    def mget(self, keys: list[str]) -> list[Any]:
        return [self.values.get(k) for k in keys]

    def eval(self, _script: str, numkeys: int, *keys_and_args: str) -> int:
        keys, args = keys_and_args[:numkeys], keys_and_args[numkeys:]
        for key, node in zip(keys[1:], args, strict=True):
            if key not in self.values:
                self.srem(keys[0], node)
        return 0

    def llen(self, key: str) -> int:
        return self.lists.get(key, 0)

    def hlen(self, _key: str) -> int:
        return 2


def test_workers_online_come_from_live_heartbeats() -> None:
    client = _Client()
    broker.beat(client, "rec@a", ["recognize"], 5.0)
    broker.beat(client, "ing@b", ["ingest", "albums", "ingest"], 5.0)
    broker.beat(client, "old@c", ["recognize"], 5.0)
    assert client.ttls[broker.worker_key("rec@a")] == 15_000  # three missed beats
    assert client.ttls[broker.WORKERS_KEY] == 15_000
    assert json.loads(client.values[broker.worker_key("ing@b")]) == {"queues": ["albums", "ingest"]}
    del client.values[broker.worker_key("old@c")]  # its key expired: a killed worker

    online = broker.workers_online(client, QUEUES)
    assert online == {"ingest": ["ing@b"], "recognize": ["rec@a"], "albums": ["ing@b"], "cleaning": [],
                      "training": []}  # fmt: skip
    assert client.sets[broker.WORKERS_KEY] == {"rec@a", "ing@b"}  # the expired name pruned

    broker.forget(client, "rec@a")  # a worker that stops leaves at once
    assert broker.workers_online(client, ["recognize"])["recognize"] == []


def test_queue_depths_read_every_priority_list() -> None:
    client = _Client()
    client.lists = {"recognize": 2, broker.priority_key("recognize", 9): 5}
    [depth] = broker.queue_depths(client, ["recognize"], PRIORITY_STEPS)
    assert depth.by_priority == {0: 2, 3: 0, 6: 0, 9: 5} and depth.total == 7
    assert broker.unacked_count(client) == 2
