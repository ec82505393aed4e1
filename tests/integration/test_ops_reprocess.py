"""`reprocess` selectors against the real PostgreSQL, enqueued through a real Celery app onto a Redis database of
its own; what was enqueued is read back from Redis (the recognize queue's priority sub-lists)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from devtools.stack.testing import flushed_redis
from shared.db.models import Landmark, ModelStatus, ModelVersion, Photo, PhotoStatus
from shared.ops import jobs
from shared.ops.selectors import PhotoSelector, SelectorError, select_photo_ids
from shared.photos import records as photos
from shared.photos.apply import apply_recognition
from shared.settings import Settings
from workers.celery_app import LIVE_PRIORITY, REPROCESS_PRIORITY, make_celery
from workers.fleet import RECOGNIZE_TASK, priority_key, queue_depths, send_recognitions

pytestmark = pytest.mark.integration

BROKER = "redis://127.0.0.1:6379/12"  # a database of its own: no dev worker consumes it


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    with flushed_redis(BROKER) as client:
        yield client


@pytest.fixture
def celery_app(broker: redis.Redis, tmp_path: Path) -> Iterator[Celery]:
    app = make_celery(Settings(broker_url=BROKER, result_backend=BROKER, state_dir=tmp_path))
    yield app
    app.close()


def enqueued(client: redis.Redis, queue: str, priority: int) -> list[str]:
    """Photo ids of the recognize messages waiting in one priority sub-list, oldest first."""
    ids = []
    for raw in reversed(client.lrange(priority_key(queue, priority), 0, -1)):  # LPUSH: newest at the head
        message = json.loads(raw)
        assert message["headers"]["task"] == RECOGNIZE_TASK
        assert message["properties"]["priority"] == priority
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return ids


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def outcome(slug: str | None) -> dict:
    method = "global+verified" if slug else "none"
    return {"matches": [{"landmark": slug, "score": 0.9, "method": method, "verified": bool(slug)}], "meta": {}}


@pytest.fixture
def world(db_session: Session) -> dict[str, uuid.UUID | int]:
    """Two users' photos in every state, recognised by an old (v1) or the active (v2) model."""
    db_session.add_all(
        [
            Landmark(slug="ops_colosseum", name="Colosseum"),
            Landmark(slug="ops_pisa", name="Leaning Tower"),
        ]
    )
    v1 = ModelVersion(version="ops-v1", backbone="efficientnet_lite2", status=ModelStatus.retired)
    v2 = ModelVersion(version="ops-v2", backbone="efficientnet_lite2", status=ModelStatus.active)
    v3 = ModelVersion(version="ops-v3", backbone="efficientnet_lite2", status=ModelStatus.ready)
    db_session.add_all([v1, v2, v3])
    db_session.flush()

    def photo(key: str, owner: str | None, created: str) -> uuid.UUID:
        result = photos.record_created(
            db_session, bucket="ops-photos", key=key, etag="e1", size=1, content_type="image/jpeg", owner=owner
        )
        db_session.get(Photo, result.photo_id).created_at = at(created)
        return result.photo_id

    ids: dict[str, uuid.UUID | int] = {"v1": v1.id, "v2": v2.id, "v3": v3.id}
    ids["a1"] = photo("users/ops-alice/1.jpg", "ops-alice", "2024-01-10")
    apply_recognition(db_session, ids["a1"], "e1", v1.id, outcome("ops_colosseum"))
    ids["a2"] = photo("users/ops-alice/2.jpg", "ops-alice", "2024-02-10")
    apply_recognition(db_session, ids["a2"], "e1", v2.id, outcome("ops_pisa"))
    ids["a3"] = photo("users/ops-alice/3.jpg", "ops-alice", "2024-03-10")
    db_session.get(Photo, ids["a3"]).status = PhotoStatus.failed
    ids["a4"] = photo("users/ops-alice/4.jpg", "ops-alice", "2024-01-15")
    apply_recognition(db_session, ids["a4"], "e1", v1.id, outcome("ops_colosseum"))
    photos.record_removed(db_session, bucket="ops-photos", key="users/ops-alice/4.jpg")
    ids["b1"] = photo("users/ops-bob/1.jpg", "ops-bob", "2024-02-20")
    apply_recognition(db_session, ids["b1"], "e1", v1.id, outcome("ops_pisa"))  # v1 said Pisa,
    apply_recognition(db_session, ids["b1"], "e1", v2.id, outcome("ops_colosseum"))  # v2 says Colosseum
    ids["b2"] = photo("users/ops-bob/2.jpg", "ops-bob", "2024-03-20")  # pending
    ids["o1"] = photo("misc/orphan.jpg", None, "2024-01-01")  # no owner: failed, never reprocessable
    db_session.flush()
    return ids


def names(world: dict, selected: list[uuid.UUID]) -> list[str]:
    by_id = {v: k for k, v in world.items() if isinstance(v, uuid.UUID)}
    return [by_id.get(i, f"other:{i}") for i in selected]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (PhotoSelector(user="ops-alice"), ["a1", "a2", "a3"]),
        (PhotoSelector(user="ops-bob"), ["b1", "b2"]),
        (PhotoSelector(user="ops-alice", since=at("2024-02-01")), ["a2", "a3"]),
        (PhotoSelector(user="ops-alice", until=at("2024-02-10")), ["a1"]),  # until is exclusive
        (PhotoSelector(user="ops-alice", since=at("2024-01-01"), until=at("2024-03-01")), ["a1", "a2"]),
        (PhotoSelector(user="ops-alice", status=PhotoStatus.failed), ["a3"]),
        (PhotoSelector(user="ops-bob", status=PhotoStatus.pending), ["b2"]),
        (PhotoSelector(landmark="ops_colosseum"), ["a1", "b1"]),  # a4 is deleted; b1 by its current version
        (PhotoSelector(landmark="ops_pisa"), ["a2"]),  # b1's Pisa was v1's answer, not its current one
        (PhotoSelector(landmark="ops_colosseum", user="ops-bob"), ["b1"]),
    ],
)
def test_selectors_pick_exactly(db_session: Session, world, selector: PhotoSelector, expected: list[str]) -> None:
    assert names(world, select_photo_ids(db_session, selector)) == expected


def test_model_selectors(db_session: Session, world) -> None:
    older = select_photo_ids(db_session, PhotoSelector(model_older_than="ops-v2"))
    assert [i for i in older if i in world.values()] == [world["a1"]]  # a4 (v1) is deleted
    assert set(select_photo_ids(db_session, PhotoSelector(model_older_than="ops-v3"))) >= {world["a1"], world["a2"]}
    stale = names(world, select_photo_ids(db_session, PhotoSelector(stale=True, user="ops-alice")))
    assert stale == ["a1", "a3"]  # a2 is by the active v2; a3 failed before any model
    assert names(world, select_photo_ids(db_session, PhotoSelector(stale=True, user="ops-bob"))) == ["b2"]


def test_all_never_selects_deleted_or_ownerless(db_session: Session, world) -> None:
    selected = select_photo_ids(db_session, PhotoSelector(all=True))
    assert {world[k] for k in ("a1", "a2", "a3", "b1", "b2")} <= set(selected)
    assert world["a4"] not in selected and world["o1"] not in selected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (PhotoSelector(), "no selector"),
        (PhotoSelector(status=PhotoStatus.deleted), "never reprocessed"),
        (PhotoSelector(user="nobody-at-all"), "no user"),
        (PhotoSelector(landmark="no_such_landmark"), "no landmark"),
        (PhotoSelector(model_older_than="v9999-nope"), "no model version"),
    ],
)
def test_bad_selections_are_refused(db_session: Session, world, selector: PhotoSelector, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        select_photo_ids(db_session, selector)


def test_stale_needs_an_active_model(db_session: Session, world) -> None:
    db_session.get(ModelVersion, world["v2"]).status = ModelStatus.retired
    db_session.flush()
    with pytest.raises(SelectorError, match="active model"):
        select_photo_ids(db_session, PhotoSelector(stale=True))


def test_a_job_enqueues_exactly_the_selection_behind_live_uploads(
    session_factory: sessionmaker[Session], db_session: Session, world, celery_app: Celery, broker: redis.Redis
) -> None:
    live = uuid.uuid4()
    celery_app.send_task(RECOGNIZE_TASK, args=[str(live)])  # a fresh upload: the default priority
    enqueue = partial(send_recognitions, celery_app, priority=REPROCESS_PRIORITY)
    job = jobs.create_job(db_session, PhotoSelector(user="ops-alice"), priority=REPROCESS_PRIORITY, created_by="t")
    db_session.commit()

    depth = lambda: queue_depths(celery_app, ["recognize"])[0].total  # noqa: E731
    result = jobs.feed_job(session_factory, job.id, depth=depth, enqueue=enqueue, bound=100, page_size=2)

    assert (result.outcome, result.sent) == ("finished", 3)
    db_session.expire_all()
    assert (job.total, job.enqueued, job.reset) == (3, 3, 1)
    assert enqueued(broker, "recognize", REPROCESS_PRIORITY) == [str(world[k]) for k in ("a1", "a2", "a3")]
    assert enqueued(broker, "recognize", LIVE_PRIORITY) == [str(live)]
    assert db_session.get(Photo, world["a3"]).status == PhotoStatus.pending  # claim_photo skips failed photos
    assert db_session.get(Photo, world["a3"]).error is None
    assert db_session.get(Photo, world["a1"]).status == PhotoStatus.done  # stays in its album until redone
    depth_now = {d.name: d for d in queue_depths(celery_app, ["recognize", "ingest"])}
    assert depth_now["recognize"].total == 4 and depth_now["recognize"].by_priority == {0: 1, 3: 0, 6: 0, 9: 3}
    assert depth_now["ingest"].total == 0

    # A worker's BRPOP order: the live upload first, then the backlog in the order it was selected.
    with celery_app.connection_for_read() as connection:
        channel = connection.default_channel
        served = []
        while (message := channel.basic_get("recognize", no_ack=True)) is not None:
            served.append(json.loads(message.body)[0][0])
    assert served == [str(live)] + [str(world[k]) for k in ("a1", "a2", "a3")]


def test_dry_run_count_changes_nothing(db_session: Session, world, broker: redis.Redis) -> None:
    count = jobs.count_selection(db_session, PhotoSelector(status=PhotoStatus.failed))
    assert count >= 1 and db_session.get(Photo, world["a3"]).status == PhotoStatus.failed
    assert broker.dbsize() == 0
