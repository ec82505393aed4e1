"""Micro-batching of the recognize queue on the real stack, forced on for a CPU worker.

The conftest stack is built here with ``LANDMARKS_RECOGNITION__MICRO_BATCH`` set, so its recognize worker runs
`recognition.recognize_photo` messages in celery-batches micro-batches (tasks/recognition.py) while every
producer sends them exactly as before. The worker is started without `--prefetch-multiplier` (as the test
helpers start every worker): the task raises its own prefetch window so the batches can fill.

Batching is proven from what the tasks return (each photo's result in the result backend carries the size of the
recognizer call it was part of), never from timing.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devtools.stack import proc, seaweed
from shared.db.models import AlbumPhoto, Photo, PhotoStatus, TaskFailure
from shared.events import CREATED, ObjectEvent
from shared.photos.albums import list_albums

if TYPE_CHECKING:
    from tests.integration.conftest import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MICRO_BATCH = 8
RECOGNIZE_WORKER = "worker-recognize"
DEADLINE_S = 180.0
FINAL = {PhotoStatus.done, PhotoStatus.failed, PhotoStatus.deleted}


@pytest.fixture(scope="module")
def micro_batching() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LANDMARKS_RECOGNITION__MICRO_BATCH", str(MICRO_BATCH))
        # Long enough that a burst arriving over a second still shares batches on a loaded 2-core machine.
        mp.setenv("LANDMARKS_RECOGNITION__MICRO_BATCH_WAIT_MS", "1000")
        yield


@pytest.fixture(scope="module")
def running_stack(micro_batching: None, running_stack: RunningStack) -> RunningStack:
    """The conftest stack, its settings (and so its processes' environment) read while micro-batching is set."""
    assert running_stack.stack.settings.recognition.micro_batch == MICRO_BATCH
    return running_stack


def user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def albums_of(session: Session, owner: str) -> dict[str, list[str]]:
    """landmark slug -> keys of the album's photos, checking on the way that each count equals its membership."""
    result: dict[str, list[str]] = {}
    for albums in list_albums(session, owner).values():
        for album in albums:
            keys = sorted(p.key for p in album.photos)
            assert album.photo_count == len(keys), f"{owner}/{album.landmark_slug}: count {album.photo_count}"
            result[album.landmark_slug] = keys
    return result


def recognize_results(e2e: RunningStack) -> list[dict[str, Any]]:
    """Every stored result of `recognition.recognize_photo` on this stack's own Redis database."""
    client = redis.Redis.from_url(e2e.stack.settings.result_backend)
    try:
        found = []
        for key in client.scan_iter("celery-task-meta-*"):
            raw = client.get(key)
            meta = json.loads(raw) if raw else {}
            result = meta.get("result")
            if meta.get("status") == "SUCCESS" and isinstance(result, dict) and "batch_size" in result:
                found.append(result)
        return found
    finally:
        client.close()


def replay(e2e: RunningStack, key: str, data: bytes, etag: str, owner: str, times: int) -> None:
    """Send the object's created event again, as a redelivering bridge would, and wait until ingest took each."""
    record = ObjectEvent(
        CREATED, e2e.bucket, key, len(data), etag, "image/jpeg", {"user": owner}, datetime.now(UTC), "test:replay"
    ).to_record()
    celery = e2e.stack.celery()
    sent = [celery.send_task("ingest.object_event", args=[record]) for _ in range(times)]
    assert {r.get(timeout=DEADLINE_S)["action"] for r in sent} <= {"recognize", "unchanged"}


def test_a_burst_is_recognised_in_micro_batches_and_a_corrupt_photo_fails_alone(e2e: RunningStack) -> None:
    ivy = user("ivy")
    # Three copies of each photo: copies have the same size, so when a batch holds two of them they go through
    # the network in one forward pass (the embedder groups a call's photos by size).
    sources = [("alice", "taj_mahal.jpg", "taj_mahal"), ("alice", "colosseum.jpg", "colosseum")]
    sources.append(("bob", "farm_dog.jpg", None))
    uploads: dict[str, tuple[bytes, str | None]] = {}
    for who, name, landmark in sources:
        for copy in range(3):
            uploads[f"users/{ivy}/{copy}-{name}"] = ((e2e.upload_dir() / who / name).read_bytes(), landmark)
    corrupt = f"users/{ivy}/broken.jpg"
    replayed = f"users/{ivy}/0-taj_mahal.jpg"
    keys = [*uploads, corrupt]

    # The burst queues up while the recognize worker is down, so its first batches fill by count.
    e2e.stack.stop(RECOGNIZE_WORKER)
    try:
        etags = {key: e2e.upload(key, data, owner=ivy) for key, (data, _) in uploads.items()}
        e2e.upload(corrupt, b"hello, not a photo", owner=ivy)
        e2e.wait_until(lambda s: len(e2e.photos_by_key(s, keys)) == len(keys), "ingest of the burst")
        replay(e2e, replayed, uploads[replayed][0], etags[replayed], ivy, times=3)
    finally:
        e2e.stack.start(RECOGNIZE_WORKER)

    def all_final(session: Session) -> dict[str, Photo] | None:
        found = e2e.photos_by_key(session, keys)
        return found if len(found) == len(keys) and all(p.status in FINAL for p in found.values()) else None

    photos = e2e.wait_until(all_final, "the burst to be processed")
    assert {k: p.status for k, p in photos.items()} == {
        **dict.fromkeys(uploads, PhotoStatus.done),
        corrupt: PhotoStatus.failed,
    }
    with e2e.factory() as session:
        expected: dict[str, list[str]] = {}
        for key, (_, landmark) in uploads.items():
            if landmark:
                expected.setdefault(landmark, []).append(key)
        assert albums_of(session, ivy) == {slug: sorted(k) for slug, k in expected.items()}
        # The replayed event: still one photo row and one album entry.
        assert session.scalar(select(func.count()).where(Photo.bucket == e2e.bucket, Photo.key == replayed)) == 1
        assert session.scalar(select(func.count()).where(AlbumPhoto.photo_id == photos[replayed].id)) == 1

    def failures(session: Session) -> list[str] | None:
        reasons = session.scalars(select(TaskFailure.reason).where(TaskFailure.photo_id == photos[corrupt].id)).all()
        return list(reasons) or None

    reasons = e2e.wait_until(failures, "the corrupt photo's failure row")
    assert len(reasons) == 1 and reasons[0].startswith("not_an_image")
    assert (photos[corrupt].error or "").startswith("not_an_image")

    results = recognize_results(e2e)
    assert results, "no recognize results stored"
    sizes = [r["batch_size"] for r in results if r.get("action") == "recognized"]
    assert max(sizes) > 1, f"every recognizer call held one photo: {sizes}"
    assert max(sizes) <= MICRO_BATCH


def queue_burst(e2e: RunningStack, owner: str, count: int) -> list[str]:
    """Upload ``count`` landmark photos while the recognize worker is down; return once ingest queued them all."""
    data = (e2e.upload_dir() / "alice" / "colosseum.jpg").read_bytes()
    keys = [f"users/{owner}/{i}-colosseum.jpg" for i in range(count)]
    e2e.stack.stop(RECOGNIZE_WORKER)
    for key in keys:
        e2e.upload(key, data, owner=owner)
    e2e.wait_until(lambda s: len(e2e.photos_by_key(s, keys)) == len(keys), "ingest of the burst")
    return keys


def wait_done(e2e: RunningStack, keys: list[str], owner: str, what: str) -> None:
    def all_done(session: Session) -> dict[str, Photo] | None:
        found = e2e.photos_by_key(session, keys)
        return found if len(found) == len(keys) and all(p.status in FINAL for p in found.values()) else None

    photos = e2e.wait_until(all_done, what)
    assert {k: p.status for k, p in photos.items()} == dict.fromkeys(keys, PhotoStatus.done)
    with e2e.factory() as session:
        assert albums_of(session, owner) == {"colosseum": sorted(keys)}


def log_events(e2e: RunningStack, event: str) -> list[dict[str, Any]]:
    found = []
    for line in e2e.stack.log_path(RECOGNIZE_WORKER).read_text(errors="replace").splitlines():
        if f'"{event}"' in line:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def s3_serves(e2e: RunningStack, key: str) -> bool:
    try:
        response = e2e.minio.get_object(e2e.bucket, key)
    except Exception:  # refused, or 500 while weed's volume server is still starting
        return False
    response.close()
    response.release_conn()
    return True


@pytest.mark.faults
def test_an_s3_outage_during_a_batch_retries_each_photo_then_all_are_done(e2e: RunningStack) -> None:
    jon = user("jon")
    keys = queue_burst(e2e, jon, 4)
    before = len(log_events(e2e, "photo_retry"))
    settings, registry = e2e.stack.settings, e2e.stack.registry
    outcome = seaweed.down(settings, registry)
    assert not outcome.failed, outcome.detail
    try:
        e2e.stack.start(RECOGNIZE_WORKER)
        e2e.wait_until(lambda _: len(log_events(e2e, "photo_retry")) > before, "a retry while S3 is down")
        # A warm shutdown hands the retries waiting for their countdown back to Redis. Restarting only once S3
        # serves again keeps them out of weed's start-up window, where it answers 500 (not a retried fault).
        e2e.stack.stop(RECOGNIZE_WORKER, grace=60)
    finally:
        outcome = seaweed.up(settings, registry, timeout=90)
        assert not outcome.failed, outcome.detail
    e2e.wait_until(lambda _: s3_serves(e2e, keys[0]), "S3 to serve the photos again")
    e2e.stack.start(RECOGNIZE_WORKER)
    wait_done(e2e, keys, jon, "the burst after the outage")
    with e2e.factory() as session:
        ids = {str(p.id) for p in e2e.photos_by_key(session, keys).values()}
    retried = log_events(e2e, "photo_retry")[before:]
    assert {entry["photo_id"] for entry in retried} <= ids
    assert all(entry["retries"] >= 1 for entry in retried)  # each photo published again by itself, then recognised


@pytest.mark.faults
def test_a_pool_process_killed_mid_batch_has_its_batch_requeued(e2e: RunningStack) -> None:
    """Without the requeue the batch's messages would wait for the broker's visibility timeout (4 hours here)."""
    kai = user("kai")
    keys = queue_burst(e2e, kai, 4)
    lost_before = len(log_events(e2e, "micro_batch_lost"))
    e2e.stack.start(RECOGNIZE_WORKER)
    # A fresh worker loads its model inside its first batch, after claiming the photos: a wide window.
    e2e.wait_until(
        lambda s: any(p.status == PhotoStatus.processing for p in e2e.photos_by_key(s, keys).values()),
        "the batch to claim its photos",
    )
    record = e2e.stack.registry.read(RECOGNIZE_WORKER)
    assert record is not None
    children = [m.pid for m in proc.group_members(record.pgid) if m.pid != record.pid]
    assert children, "no pool process to kill"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    wait_done(e2e, keys, kai, "the requeued batch")
    assert len(log_events(e2e, "micro_batch_lost")) > lost_before
