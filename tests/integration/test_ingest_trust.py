"""The ingest task trusts the object, not the event: owner and content come from a stat of the object, and the key
layout decides the owner where it names one (metadata that disagrees fails the photo with ``owner_conflict``)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import tasks.ingest
from shared.db.models import ModelStatus, ModelVersion, Photo, PhotoStatus, TaskFailure, User
from shared.events import CREATED, ObjectEvent
from shared.storage import ObjectInfo
from shared.versions import registry

pytestmark = pytest.mark.integration


@pytest.fixture
def ingest(session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch):
    """``ingest(event_metadata, stored_metadata, key)``: run the task on an event whose body says one thing while
    the stored object (its stat) says another; returns the task's answer."""
    stored: dict[str, ObjectInfo] = {}
    sent: list[tuple[tuple[Any, ...], dict[str, Any]]] = []  # the recognize messages: (args, kwargs)

    @contextmanager
    def session():
        with session_factory() as s, s.begin():
            yield s

    ctx = SimpleNamespace(
        settings=SimpleNamespace(s3=SimpleNamespace(photos_bucket="photos")), minio=None, session=session
    )
    monkeypatch.setattr(tasks.ingest, "context", lambda: ctx)
    monkeypatch.setattr(tasks.ingest, "stat_object", lambda _c, bucket, key: stored[key])
    monkeypatch.setattr("tasks.recognition.recognize_photo.delay", lambda *a, **kw: sent.append((a, kw)))

    def run(key: str, *, event_meta: dict[str, str], stored_meta: dict[str, str], etag: str = "real") -> dict[str, Any]:
        stored[key] = ObjectInfo("photos", key, 100, etag, "image/jpeg", stored_meta)
        event = ObjectEvent(CREATED, "photos", key, 5, "forged-etag", "text/html", event_meta, datetime.now(UTC), "t")
        return tasks.ingest.object_event.run(event.to_record())

    run.sent = sent  # type: ignore[attr-defined]
    return run


def _photo(session: Session, key: str) -> tuple[Photo, str | None]:
    photo = session.execute(select(Photo).where(Photo.bucket == "photos", Photo.key == key)).scalar_one()
    owner = session.get(User, photo.owner_id).name if photo.owner_id else None
    return photo, owner


def test_a_copy_into_another_users_folder_with_the_sources_metadata_fails_as_owner_conflict(ingest, db_session):
    answer = ingest("users/bob/copied_taj.jpg", event_meta={"user": "alice"}, stored_meta={"user": "alice"})
    assert answer["action"] == "failed"
    photo, owner = _photo(db_session, "users/bob/copied_taj.jpg")
    assert owner is None and photo.status == PhotoStatus.failed and "owner_conflict" in photo.error
    failure = db_session.execute(select(TaskFailure).where(TaskFailure.photo_id == photo.id)).scalar_one()
    assert failure.reason.startswith("owner_conflict")


def test_metadata_agreeing_with_the_key_or_absent_lets_the_key_decide(ingest, db_session):
    ingest("users/bob/a.jpg", event_meta={}, stored_meta={"user": "bob"})
    ingest("users/bob/b.jpg", event_meta={}, stored_meta={})
    assert _photo(db_session, "users/bob/a.jpg")[1] == "bob" and _photo(db_session, "users/bob/b.jpg")[1] == "bob"


def test_the_event_bodys_metadata_and_etag_are_ignored_for_the_objects_own(ingest, db_session):
    ingest("misc/forged.jpg", event_meta={"user": "mallory"}, stored_meta={"user": "alice"}, etag="etag-of-object")
    photo, owner = _photo(db_session, "misc/forged.jpg")
    assert owner == "alice"
    assert (photo.etag, photo.size, photo.content_type) == ("etag-of-object", 100, "image/jpeg")
    ingest("users/carol/x.jpg", event_meta={"user": "mallory"}, stored_meta={})  # a forged event body: no conflict
    assert _photo(db_session, "users/carol/x.jpg")[1] == "carol"


def test_a_live_uploads_message_names_the_active_version(ingest, db_session):
    """A photo uploaded right after `model activate V --reprocess` is left to the live path by V's job: its message
    names V, so a worker still caching the old version (ACTIVE_VERSION_TTL_S) looks the active one up at once."""
    db_session.add(ModelVersion(version="ingest-v2", backbone="efficientnet_lite2", status=ModelStatus.ready))
    db_session.flush()
    active = registry.activate(db_session, "ingest-v2")
    db_session.commit()
    ingest("users/dave/new.jpg", event_meta={}, stored_meta={})
    photo, _ = _photo(db_session, "users/dave/new.jpg")
    assert ingest.sent == [((str(photo.id),), {"version_id": active.id})]
