"""Faults injected by stopping and starting the real processes of the suite's own stack (see conftest.py):
Redis restarted, PostgreSQL restarted, S3 down for 30 s, a worker SIGKILLed, the bridge SIGKILLed, each while
photos are in flight. After each, every upload is in one final state and the database audit finds nothing.

Tests run in this order on one stack; each waits by polling the database with a deadline, never on timings.
"""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.orm import Session

from shared.db.models import PhotoStatus

if TYPE_CHECKING:
    from tests.faults.conftest import FaultStack

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

# Demo uploads (alice/ and bob/ of `landmarks demo prepare`): landmarks of the gallery and everyday photos.
PHOTOS = (
    "alice/taj_mahal.jpg", "alice/colosseum.jpg", "alice/eiffel_tower.jpg", "alice/fish9.jpg",
    "alice/farm_chicken.jpg", "bob/taj_mahal_closer.jpg", "bob/farm_dog.jpg", "alice/animal_calf.jpg",
)  # fmt: skip


def user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def upload_batch(faults: FaultStack, owner: str, tag: str, count: int = 4) -> list[str]:
    keys = []
    for i in range(count):
        name = PHOTOS[i % len(PHOTOS)]
        key = f"users/{owner}/{tag}/{i:02d}-{name.split('/')[1]}"
        faults.upload(key, faults.photo(name), owner)
        keys.append(key)
    return keys


def started(faults: FaultStack, keys: list[str]) -> Callable[[Session], list[str] | None]:
    """A check for wait_until: the keys whose photo is past pending, once there is at least one."""

    def check(session: Session) -> list[str] | None:
        busy = [k for k, p in faults.photos(session, keys).items() if p.status != PhotoStatus.pending]
        return busy or None

    return check


def assert_all_done(faults: FaultStack, keys: list[str], swept: bool, fault: str) -> None:
    photos = faults.final(keys)
    statuses = {k: p.status for k, p in photos.items()}
    assert statuses == dict.fromkeys(keys, PhotoStatus.done), f"after {fault} (sweep needed: {swept})"
    assert faults.audit() == []


def test_redis_restarted_with_tasks_queued_and_running(faults: FaultStack) -> None:
    keys = upload_batch(faults, user("rita"), "redis")
    faults.wait_until(started(faults, keys), "the first photo of the batch to be claimed")
    faults.stop_redis()  # a clean shutdown: Redis saves its dataset (queues, unacked messages) and reloads it
    time.sleep(3)
    faults.start_redis()
    # The task running at the restart is cancelled and its message stays unacknowledged in Redis: it comes back
    # after the visibility timeout, or sooner through the sweep (beat's job, run here by settle).
    _, swept = faults.settle(keys, quiet_s=30)
    assert_all_done(faults, keys, swept, "a Redis restart")


def test_postgres_restarted_mid_task(faults: FaultStack) -> None:
    # Enough photos that some are still queued or running when PostgreSQL stops (4 finish in well under 1 s).
    keys = upload_batch(faults, user("paul"), "postgres", 24)
    faults.wait_until(started(faults, keys), "the first photo of the batch to be claimed")
    faults.stop_postgres()  # fast shutdown: open transactions are cut off
    time.sleep(5)
    faults.start_postgres()
    photos, swept = faults.settle(keys, quiet_s=60)
    assert_all_done(faults, keys, swept, "a PostgreSQL restart")
    assert not swept, "retries alone should have recovered every photo"
    ids = {str(p.id) for p in photos.values()}
    retried = [
        line["task"]
        for line in faults.log_lines()
        if line.get("event") == "task_finished" and line.get("state") == "retry" and line.get("photo_id") in ids
    ]
    assert retried, "no task of the batch met the outage (nothing was retried)"


def test_s3_down_for_30_s_then_retries_and_the_sweep_recover(faults: FaultStack) -> None:
    keys = upload_batch(faults, user("sara"), "s3")
    faults.wait_until(started(faults, keys), "the first photo of the batch to be claimed")
    faults.stop_s3()  # weed mini: S3, filer and volume together (the bridge loses its stream too)
    time.sleep(30)
    faults.start_s3()
    _, swept = faults.settle(keys, quiet_s=90)
    assert_all_done(faults, keys, swept, "an S3 outage")


def test_a_worker_killed_mid_task_gets_its_task_redelivered(faults: FaultStack) -> None:
    # A fresh recognize worker loads its model on its first task, after claiming the photo: a wide window in
    # which the task is surely running when the SIGKILL lands.
    faults.stack.stop("worker-recognize")
    faults.stack.start("worker-recognize")
    keys = upload_batch(faults, user("kim"), "sigkill", 4)
    faults.wait_until(started(faults, keys), "the recognize worker to claim a photo")
    faults.kill("worker-recognize")
    with faults.factory() as session:
        cut = [k for k, p in faults.photos(session, keys).items() if p.status == PhotoStatus.processing]
        ids = {k: str(faults.photos(session, keys)[k].id) for k in cut}
    assert cut, "the SIGKILL landed after the claimed photo finished"
    faults.stack.start("worker-recognize")
    # No sweep here: the killed task itself must come back (its message was never acknowledged).
    faults.final(keys, timeout=faults.settings.broker_visibility_timeout_s + 240)
    assert_all_done(faults, keys, False, "a SIGKILLed worker")
    for key in cut:
        runs = faults.task_starts("recognition.recognize_photo", ids[key])
        assert len(runs) >= 2 and len(set(runs)) < len(runs), f"{key}: task ids started {runs}"


def test_the_bridge_killed_while_events_flow_resumes_from_its_cursor(faults: FaultStack) -> None:
    owner = user("bea")
    before = upload_batch(faults, owner, "bridge-before", 3)
    faults.kill("bridge-seaweedfs")  # no checkpoint on the way out: the stored cursor may lag behind
    while_down = [f"users/{owner}/bridge-down/{i}.jpg" for i in range(3)]
    for i, key in enumerate(while_down):
        faults.upload(key, faults.photo(PHOTOS[i]), owner)
    faults.stack.start("bridge-seaweedfs")
    assert_all_done(faults, before + while_down, False, "a SIGKILLed bridge")


def grey16_png_bomb(side: int = 14_000) -> bytes:
    """A 16-bit greyscale PNG of 196 MP in ~400 KB (the kind that took 3.8 GB to decode before #19)."""
    packer = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * (2 * side)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_a_bomb_upload_that_kills_its_worker_is_failed_as_worker_lost(faults: FaultStack) -> None:
    # Each time the recognize worker holds the bomb, its pool process is SIGKILLed, as the OOM killer of a pod at
    # its memory limit would kill it. Counted in PostgreSQL, the photo is failed after max_deliveries dead runs
    # instead of being redelivered forever; the photos uploaded with it are recognised.
    owner = user("olga")
    bomb_key = f"users/{owner}/poison/bomb.png"
    faults.upload(bomb_key, grey16_png_bomb(), owner)
    keys = upload_batch(faults, owner, "poison", 3)
    limit = faults.settings.recognition.max_deliveries
    killed = []
    for run in range(1, limit + 1):

        def holding_the_bomb(session: Session, run: int = run) -> bool:
            photo = faults.photos(session, [bomb_key]).get(bomb_key)
            return photo is not None and photo.delivery_count == run

        faults.wait_until(holding_the_bomb, f"the recognize worker to start run {run} of the bomb")
        killed.append(faults.kill_pool_child("worker-recognize"))
    photos = faults.final([bomb_key, *keys])
    bomb = photos[bomb_key]
    assert bomb.status == PhotoStatus.failed and (bomb.error or "").startswith("worker_lost"), bomb.error
    assert {k: photos[k].status for k in keys} == dict.fromkeys(keys, PhotoStatus.done)
    assert len(set(killed)) == limit
    assert faults.audit() == []


def test_after_every_fault_each_upload_is_in_exactly_one_final_state(faults: FaultStack) -> None:
    if not faults.uploaded:
        pytest.skip("no fault test ran before this one in the session: nothing to audit")
    faults.final(list(faults.uploaded))
    assert faults.audit() == []
