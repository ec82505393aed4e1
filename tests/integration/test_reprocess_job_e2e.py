"""A reprocess job on the real stack (weed, bridge, Celery workers on Redis, PostgreSQL, the demo model): photos
recognised by one version are recognised again by a newly activated one through a job created at once after the
activation (as `model activate V --reprocess` does) and fed as beat feeds it, with every worker, the bridge and
Redis itself restarted while the job drains. Polls the database with deadlines.

The stack runs on a redis-server of this module's own (append-only file, as a broker with persistence): the
shared Redis other tests and helpers use is never restarted.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from minio.commonconfig import CopySource
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import JobState, ModelStatus, ModelVersion, Photo, PhotoStatus
from shared.ops import jobs
from shared.ops.selectors import PhotoSelector
from shared.versions import registry
from tasks.priorities import REPROCESS_PRIORITY
from tests.integration.conftest import demo_stack_on

if TYPE_CHECKING:
    from devtools.stack.testing import PrivateRedis
    from tests.integration.conftest import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHOTOS = ("alice/taj_mahal.jpg", "alice/colosseum.jpg", "bob/taj_mahal_closer.jpg", "bob/great_pyramid.jpg")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    from devtools.stack.testing import private_redis

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: this test restarts a Redis of its own")
    with private_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def running_stack(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory, broker: PrivateRedis
) -> Iterator[RunningStack]:
    """The e2e stack of conftest, on this module's own Redis."""
    with demo_stack_on(pg_url, tmp_path_factory.mktemp("e2e-stack"), broker.url) as stack:
        yield stack


def test_a_job_survives_a_restart_of_every_worker_and_of_redis_and_processes_every_photo_once(
    e2e: RunningStack, broker: PrivateRedis
) -> None:
    owner = f"jobs-{uuid.uuid4().hex[:6]}"
    keys = []
    for n, name in enumerate(PHOTOS * 2):
        key = f"users/{owner}/{n}-{name.replace('/', '-')}"
        e2e.upload(key, (e2e.upload_dir() / name).read_bytes(), owner=owner)
        keys.append(key)

    def all_done(session: Session) -> dict[str, Photo] | None:
        found = e2e.photos_by_key(session, keys)
        ok = len(found) == len(keys) and all(p.status == PhotoStatus.done for p in found.values())
        return found if ok else None

    first = e2e.wait_until(all_done, "the uploads to be recognised")
    old_version = {p.model_version_id for p in first.values()}
    with e2e.factory.begin() as session:
        active = registry.active_version(session)
        new_name = f"{active.version}-again-{owner}"
        models = e2e.stack.settings.s3.models_bucket
        for item in e2e.minio.list_objects(models, prefix=f"{active.version}/", recursive=True):
            # The same bundle under the new version's name: a "new model" the workers load like any other.
            target = new_name + item.object_name[len(active.version) :]
            e2e.minio.copy_object(models, target, CopySource(models, item.object_name))
        v2 = ModelVersion(version=new_name, backbone=active.backbone,
                          status=ModelStatus.ready, metrics=dict(active.metrics), thresholds=dict(active.thresholds),
                          artifact_uri=active.artifact_uri)  # fmt: skip
        session.add(v2)
        session.flush()
        registry.activate(session, v2.version)
        new_id = v2.id
        # At once: the recognize worker has just used the old version and holds it for ACTIVE_VERSION_TTL_S; the
        # job's messages name the new one, so the worker looks it up at once (no photo stays on the old version).
        job = jobs.create_job(session, PhotoSelector(user=owner, stale=True), priority=REPROCESS_PRIORITY,
                              created_by="e2e")  # fmt: skip
        job_id = job.id
    assert old_version != {new_id} and job.total == len(keys)

    celery = e2e.stack.celery()
    apps = sorted(e2e.stack.apps)  # every worker and the bridge
    restarted = False
    redis_run = broker_run_id(broker)

    def finished(session: Session) -> bool:
        nonlocal restarted
        celery.send_task("ingest.feed_reprocess")  # what beat does every few seconds
        state = session.get(type(job), job_id)
        if state.enqueued and not restarted:
            e2e.stack.stop(*apps)  # warm shutdowns mid-job: unacknowledged messages go back to their queues
            broker.restart()  # the queues come back from the append-only file
            e2e.stack.start(*apps)
            restarted = True
        photos = e2e.photos_by_key(session, keys).values()
        time.sleep(0.5)
        return state.state == JobState.finished and all(
            p.status == PhotoStatus.done and p.model_version_id == new_id for p in photos
        )

    e2e.wait_until(finished, "the job to finish and every photo to be recognised by the new version")
    with e2e.factory() as session:
        state = jobs.get_job(session, job_id)
        assert restarted and broker_run_id(broker) != redis_run  # a new Redis process
        assert (state.total, state.enqueued) == (len(keys), len(keys))  # each photo sent once
        assert jobs.processed_since(session, state) == len(keys)
        leftover = session.execute(select(Photo.id).where(Photo.key.in_(keys), Photo.model_version_id != new_id)).all()
        assert leftover == []


def broker_run_id(broker: PrivateRedis) -> str:
    import redis

    client = redis.Redis.from_url(broker.url)
    try:
        return str(client.info("server")["run_id"])
    finally:
        client.close()
