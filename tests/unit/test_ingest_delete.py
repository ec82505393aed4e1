"""A delete event is applied only when the object is really gone (issue #19 item 8): the task stats it first.

The task runs in-process with a fake worker context; nothing here needs S3 or PostgreSQL.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

import tasks.ingest as ingest
from shared.events import CREATED, REMOVED, ObjectEvent
from shared.ops import sweep
from shared.photos.records import IngestResult
from shared.storage import ObjectInfo, ObjectMissing


@pytest.fixture
def removed_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []

    @contextmanager
    def session():
        yield "session"

    ctx = SimpleNamespace(settings=SimpleNamespace(s3=SimpleNamespace(photos_bucket="photos")), minio=None,
                          session=session)  # fmt: skip
    monkeypatch.setattr(ingest, "context", lambda: ctx)

    def record_removed(session, **kwargs):
        calls.append(kwargs)
        return IngestResult("deleted")

    monkeypatch.setattr(ingest.photos, "record_removed", record_removed)
    return calls


def delete_event(key: str) -> dict:
    return ObjectEvent(REMOVED, "photos", key, 0, "", None, {}, datetime.now(UTC), "test", "00AB").to_record()


def _stat_with(monkeypatch: pytest.MonkeyPatch, stat) -> None:
    """The ingest task stats objects itself and through shared.storage.object_exists (delete events)."""
    monkeypatch.setattr(ingest, "stat_object", stat)
    monkeypatch.setattr("shared.storage.stat_object", stat)


def test_a_delete_whose_object_is_still_there_changes_nothing(removed_calls, monkeypatch) -> None:
    _stat_with(monkeypatch, lambda client, bucket, key: ObjectInfo(bucket, key, 1, "e"))
    assert ingest.object_event(delete_event("users/u/back.jpg")) == {"action": "ignored", "reason": "object exists"}
    assert removed_calls == []


def test_a_delete_whose_object_is_gone_is_applied_with_its_order(removed_calls, monkeypatch) -> None:
    def missing(client, bucket, key):
        raise ObjectMissing(key)

    _stat_with(monkeypatch, missing)
    assert ingest.object_event(delete_event("users/u/gone.jpg")) == {"action": "deleted"}
    assert removed_calls == [{"bucket": "photos", "key": "users/u/gone.jpg", "sequencer": "00AB"}]


def test_a_sweep_event_for_an_object_deleted_since_the_listing_changes_nothing(monkeypatch) -> None:
    """The sweep listed the object, then it was deleted and its row marked so: the sweep's event must not bring the
    row back (it would fail as object_missing instead of staying deleted)."""
    ctx = SimpleNamespace(settings=SimpleNamespace(s3=SimpleNamespace(photos_bucket="photos")), minio=None)
    monkeypatch.setattr(ingest, "context", lambda: ctx)

    def missing(client, bucket, key):
        raise ObjectMissing(key)

    _stat_with(monkeypatch, missing)
    record = ObjectEvent(CREATED, "photos", "users/u/a.jpg", 5, "e1", None, {}, datetime.now(UTC),
                         sweep.SWEEP_SOURCE).to_record()  # fmt: skip
    assert ingest.object_event(record)["action"] == "ignored"  # no session was needed: nothing written
