"""Faults injected by stopping and starting the real processes of the suite's own stack (see conftest.py):
Redis restarted, PostgreSQL restarted, S3 down for 30 s, a worker SIGKILLed, the bridge SIGKILLed, each while
photos are in flight. After each, every upload is in one final state and the database audit finds nothing.

Tests run in this order on one stack; each waits by polling the database with a deadline, never on timings.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devtools.stack.cgroup import MemoryCgroup
from shared.db.models import AlbumPhoto, Photo, PhotoStatus

if TYPE_CHECKING:
    from tests.faults.conftest import FaultStack

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

# Demo uploads (alice/ and bob/ of `landmarks demo prepare`): landmarks of the gallery and everyday photos.
POLL = 0.2
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


def png_bomb(side: int, bit_depth: int, colour_type: int, bytes_per_pixel: int) -> bytes:
    """A ``side`` x ``side`` PNG of one flat colour: deflate shrinks its rows to a few hundred KB."""
    packer = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * (bytes_per_pixel * side)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def grey16_png_bomb(side: int = 14_000) -> bytes:
    """A 16-bit greyscale PNG of 196 MP in ~400 KB (the kind that took 3.8 GB to decode before #19)."""
    return png_bomb(side, bit_depth=16, colour_type=0, bytes_per_pixel=2)


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


def rgb_png_bomb(side: int = 14_000) -> bytes:
    """An 8-bit RGB PNG of 196 MP in ~600 KB: decoded whole by Pillow (4 bytes a pixel, ~790 MB), under the default
    per-decode budget of 1 GiB, so only the process's memory limit stops it."""
    return png_bomb(side, bit_depth=8, colour_type=2, bytes_per_pixel=3)


# Above what the capped worker peaked at on ordinary photos (model loaded, a photo decoded): room for any demo
# photo, far from the ~790 MB the bomb's decode needs.
OOM_HEADROOM = 384 << 20


def test_a_worker_killed_by_its_memory_limit_on_a_bomb_fails_it_as_worker_lost(faults: FaultStack) -> None:
    # A real memory limit (a cgroup, as a container's), not a signal sent by the test: the recognize worker's pool
    # process decodes a bomb past the limit and the kernel's OOM killer kills it. The decode budget is raised above
    # the limit, so it is the limit that stops the decode. Counted in PostgreSQL, the photo is failed as worker_lost
    # after max_deliveries dead runs; the same worker, with a fresh pool process, goes on serving other photos.
    cgroup = MemoryCgroup.create(f"landmarks-faults-{uuid.uuid4().hex[:8]}")
    if cgroup is None:
        pytest.skip("no memory cgroup can be made here (needs root and a writable /sys/fs/cgroup)")
    owner = user("otto")
    limit = faults.settings.recognition.max_deliveries
    try:
        env = {"LANDMARKS_RECOGNITION__MAX_DECODE_BYTES": str(64 << 30)}
        with faults.capped_recognize_worker(cgroup, env) as app:
            record = faults.stack.registry.read(app)
            assert record is not None
            warm = upload_batch(faults, owner, "oom-warm", 3)
            assert_all_done(faults, warm, False, "ordinary photos on the capped worker")
            cgroup.set_limit(cgroup.peak() + OOM_HEADROOM)
            bomb_key = f"users/{owner}/oom/bomb.png"
            faults.upload(bomb_key, rgb_png_bomb(), owner)
            with_it = upload_batch(faults, owner, "oom-with", 3)
            photos = faults.final([bomb_key, *with_it], timeout=240 + 60 * limit)
            bomb = photos[bomb_key]
            assert bomb.status == PhotoStatus.failed and (bomb.error or "").startswith("worker_lost"), bomb.error
            assert cgroup.oom_kills() >= limit, f"{cgroup.oom_kills()} OOM kills for {limit} deliveries"
            assert {k: photos[k].status for k in with_it} == dict.fromkeys(with_it, PhotoStatus.done)
            after = upload_batch(faults, owner, "oom-after", 2)
            assert_all_done(faults, after, False, "OOM kills of the pool process")
            still = faults.stack.registry.read(app)
            assert still is not None and still.pid == record.pid and still.running(), "the worker itself died"
    finally:
        cgroup.remove()
    assert faults.audit() == []


def test_a_delete_overtaken_by_its_reupload_leaves_the_live_photo_recognised(faults: FaultStack) -> None:
    # Delete then re-upload of one key, with the delete event reaching ingest after the re-upload's create (two
    # bridges, or two ingest processes, racing). The events are the filer's own, read by the bridge's subscriber;
    # only the delete is held back until the new content is recognised.
    from shared.events.record import ObjectEvent
    from workers.bridge.dispatch import Record, celery_dispatch
    from workers.bridge.runner import filer_grpc_address
    from workers.bridge.subscriber import SeaweedSubscriber

    owner = user("rhea")
    key = f"users/{owner}/reorder/photo.jpg"
    faults.upload(key, faults.photo(PHOTOS[0]), owner)
    first = faults.final([key])[key]
    assert first.status == PhotoStatus.done
    send = celery_dispatch(faults.stack.celery())
    held: list[Record] = []

    def delete_last(record: Record) -> None:
        event = ObjectEvent.from_record(record)
        if event.key == key and event.is_removed:
            held.append(record)
        else:
            send(record)

    class NoCursor:  # start at the moment below, remember nothing (the stack's bridge keeps its own cursor)
        def load(self, name: str) -> int | None:
            return None

        def save(self, name: str, position: int) -> None:
            pass

    settings = faults.settings
    faults.stack.stop("bridge-seaweedfs")  # started again below: it replays both events from its cursor, in order
    since = time.time_ns()
    follower = SeaweedSubscriber(
        address=filer_grpc_address(settings.s3.endpoint, settings.seaweed.filer_grpc_port),
        dispatch=delete_last,
        cursors=NoCursor(),
        cursor_name=f"faults-reorder-{owner}",
        start_window_s=0.0,
        clock_ns=lambda: since,
    )
    thread = threading.Thread(target=follower.run, name="reorder-bridge", daemon=True)
    thread.start()
    try:
        faults.minio.remove_object(faults.bucket, key)
        etag = faults.upload(key, faults.photo(PHOTOS[2]), owner).strip('"')

        def recognised_again(session: Session) -> Photo | None:
            photo = faults.photos(session, [key]).get(key)
            live = photo is not None and (photo.etag or "").strip('"') == etag and photo.status == PhotoStatus.done
            return photo if live and held else None

        faults.wait_until(recognised_again, "the re-upload to be recognised (its delete held back)")
    finally:
        follower.stop()
        thread.join(timeout=30)
    for record in held:
        send(record)

    def delete_applied(session: Session) -> bool:
        return any(
            line.get("event") in ("object_removed_but_present", "object_removed") and line.get("key") == key
            for line in faults.log_lines("worker-ingest")
        )

    faults.wait_until(delete_applied, "the late delete to reach ingest")
    faults.stack.start("bridge-seaweedfs")
    photo = faults.final([key])[key]
    assert photo.status == PhotoStatus.done and (photo.etag or "").strip('"') == etag, (photo.status, photo.etag)
    with faults.factory() as session:
        assert session.scalar(select(func.count()).where(AlbumPhoto.photo_id == photo.id)) == 1
    assert faults.audit() == []


def test_a_bridge_with_the_default_token_on_a_public_address_refuses_to_start(faults: FaultStack) -> None:
    # `landmarks bridge run` as deployed (both sources, the webhook on all addresses) against this stack, with the
    # token left at its default: it must exit before it listens, subscribes or sends anything.
    from devtools.stack.testing import free_ports
    from shared.settings import Settings

    default = Settings.model_fields["webhook_token"].default.get_secret_value()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANDMARKS_")}
    env.update({**faults.stack.env, "LANDMARKS_WEBHOOK_TOKEN": default})
    landmarks = str(Path(sys.executable).parent / "landmarks")
    [port] = free_ports(1)
    cwd = faults.settings.state_dir
    refused = subprocess.run(
        [landmarks, "bridge", "run", "--host", "0.0.0.0", "--port", str(port)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    assert "webhook token" in refused.stderr and "seaweedfs.start" not in refused.stdout + refused.stderr
    assert not listening(port)
    # The same command on loopback starts on this stack (so the address and the token are what it refused).
    webhook_only = [landmarks, "bridge", "run", "--source", "webhook", "--host", "127.0.0.1", "--port", str(port)]
    loopback = subprocess.Popen(webhook_only, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            assert loopback.poll() is None, loopback.stderr.read().decode() if loopback.stderr else ""
            assert time.monotonic() < deadline, "the loopback bridge did not listen within 60 s"
            time.sleep(POLL)
    finally:
        loopback.terminate()
        loopback.wait(timeout=30)
    keys = upload_batch(faults, user("tara"), "after-refusal", 2)
    assert_all_done(faults, keys, False, "a refused bridge start")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_after_every_fault_each_upload_is_in_exactly_one_final_state(faults: FaultStack) -> None:
    if not faults.uploaded:
        pytest.skip("no fault test ran before this one in the session: nothing to audit")
    faults.final(list(faults.uploaded))
    assert faults.audit() == []
