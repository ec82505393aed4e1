"""Worker heartbeats on a real Redis: keys expire after three missed beats, names of expired keys are pruned by
the reader (Lua, so a worker that beat meanwhile stays listed), and a stopping worker leaves at once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from devtools.stack.testing import claim_redis_db, release_redis_db
from workers import broker

pytestmark = pytest.mark.integration


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    url = claim_redis_db()
    connection = broker.connect(url)
    try:
        yield connection
    finally:
        connection.close()
        release_redis_db(url)


def test_heartbeats_expire_prune_and_leave(client: redis.Redis) -> None:
    broker.beat(client, "fast@h", ["recognize"], interval_s=0.1)  # a key for 0.3 s
    broker.beat(client, "slow@h", ["recognize", "ingest"], interval_s=60)
    assert broker.workers_online(client, ["recognize", "ingest"]) == {
        "recognize": ["fast@h", "slow@h"],
        "ingest": ["slow@h"],
    }
    assert 0 < client.pttl(broker.worker_key("slow@h")) <= 180_000

    time.sleep(0.5)  # fast@h missed three beats: killed
    assert broker.workers_online(client, ["recognize"])["recognize"] == ["slow@h"]
    assert client.smembers(broker.WORKERS_KEY) == {b"slow@h"}  # its name pruned

    broker.beat(client, "back@h", ["recognize"], interval_s=60)
    client.delete(broker.worker_key("back@h"))
    client.set(broker.worker_key("back@h"), '{"queues": ["recognize"]}', px=60_000)  # beat again, set untouched
    client.eval(broker.FORGET_EXPIRED, 2, broker.WORKERS_KEY, broker.worker_key("back@h"), "back@h")
    assert b"back@h" in client.smembers(broker.WORKERS_KEY)  # a live key is never pruned

    broker.forget(client, "slow@h")
    assert "slow@h" not in broker.workers_online(client, ["recognize"])["recognize"]
