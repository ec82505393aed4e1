"""Photo, album and failure services against the real PostgreSQL: idempotency and counts equal membership."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import albums, photos
from shared.db.models import (
    Album,
    AlbumPhoto,
    Landmark,
    ModelStatus,
    ModelVersion,
    Photo,
    PhotoStatus,
    Recognition,
    TaskFailure,
)
from shared.pipeline import apply_recognition

pytestmark = pytest.mark.integration


@pytest.fixture
def world(db_session: Session) -> dict[str, int]:
    colosseum = Landmark(slug="colosseum", name="Colosseum", country="Italy", lat=41.89, lon=12.49)
    pisa = Landmark(slug="pisa_tower", name="Leaning Tower of Pisa", country="Italy", lat=43.72, lon=10.40)
    v1 = ModelVersion(version="test-v1", backbone="efficientnet_lite2", status=ModelStatus.active)
    v2 = ModelVersion(version="test-v2", backbone="efficientnet_lite2", status=ModelStatus.ready)
    db_session.add_all([colosseum, pisa, v1, v2])
    db_session.flush()
    return {"colosseum": colosseum.id, "pisa": pisa.id, "v1": v1.id, "v2": v2.id}


def _created(session: Session, key: str, etag: str = "e1", owner: str | None = "alice") -> photos.IngestResult:
    return photos.record_created(
        session, bucket="photos", key=key, etag=etag, size=10, content_type="image/jpeg", owner=owner
    )


def _outcome(slug: str | None, score: float = 0.8) -> dict:
    method = "global+verified" if slug else "none"
    return {
        "matches": [{"landmark": slug, "score": score, "method": method, "verified": bool(slug)}],
        "meta": {},
    }


def _album_state(session: Session) -> list[tuple[int, int, int]]:
    """(owner, landmark, photo_count) per album, and the check that counts equal membership."""
    rows = session.execute(select(Album)).scalars().all()
    for album in rows:
        members = session.execute(
            select(func.count()).select_from(AlbumPhoto).where(AlbumPhoto.album_id == album.id)
        ).scalar_one()
        assert album.photo_count == members
    return sorted((a.owner_id, a.landmark_id, a.photo_count) for a in rows)


def test_owner_from_metadata_or_key_layout() -> None:
    assert photos.resolve_owner("x/y.jpg", {"X-Amz-Meta-User": "alice"}) == "alice"
    assert photos.resolve_owner("users/bob/2024/y.jpg", {}) == "bob"
    assert photos.resolve_owner("y.jpg", {"user": ""}) is None
    assert photos.resolve_owner("misc/y.jpg", {}) is None


def test_same_event_three_times_gives_one_photo_and_one_album_entry(db_session: Session, world) -> None:
    first = _created(db_session, "users/alice/a.jpg")
    assert first.action == "recognize"
    assert apply_recognition(db_session, first.photo_id, "e1", world["v1"], _outcome("colosseum")) == "applied"
    for _ in range(2):
        again = _created(db_session, "users/alice/a.jpg")
        assert again.action == "unchanged" and again.photo_id == first.photo_id
        assert apply_recognition(db_session, first.photo_id, "e1", world["v1"], _outcome("colosseum")) == "applied"
    assert db_session.execute(select(func.count()).select_from(Photo)).scalar_one() == 1
    assert db_session.execute(select(func.count()).select_from(Recognition)).scalar_one() == 1
    owner = db_session.get(Photo, first.photo_id).owner_id
    assert _album_state(db_session) == [(owner, world["colosseum"], 1)]


def test_pending_duplicate_is_re_enqueued(db_session: Session, world) -> None:
    first = _created(db_session, "users/alice/p.jpg")
    assert _created(db_session, "users/alice/p.jpg").action == "recognize"  # first enqueue may have been lost
    assert db_session.get(Photo, first.photo_id).status == PhotoStatus.pending


def test_two_users_same_landmark_get_separate_albums(db_session: Session, world) -> None:
    a = _created(db_session, "users/alice/1.jpg", owner="alice")
    b = _created(db_session, "users/bob/1.jpg", owner="bob")
    c = _created(db_session, "users/bob/2.jpg", owner="bob")
    for result in (a, b, c):
        apply_recognition(db_session, result.photo_id, "e1", world["v1"], _outcome("colosseum"))
    alice_albums = albums.list_albums(db_session, "alice")
    bob_albums = albums.list_albums(db_session, "bob")
    alice_keys = [p.key for city in alice_albums.values() for al in city for p in al.photos]
    bob_keys = [p.key for city in bob_albums.values() for al in city for p in al.photos]
    assert alice_keys == ["users/alice/1.jpg"]
    assert sorted(bob_keys) == ["users/bob/1.jpg", "users/bob/2.jpg"]
    assert [al.photo_count for city in bob_albums.values() for al in city] == [2]
    assert len(_album_state(db_session)) == 2


def test_reprocess_with_newer_model_moves_photo(db_session: Session, world) -> None:
    r = _created(db_session, "users/alice/m.jpg")
    apply_recognition(db_session, r.photo_id, "e1", world["v1"], _outcome("colosseum"))
    apply_recognition(db_session, r.photo_id, "e1", world["v2"], _outcome("pisa_tower"))
    owner = db_session.get(Photo, r.photo_id).owner_id
    assert _album_state(db_session) == [(owner, world["pisa"], 1)]  # the emptied Colosseum album is gone
    assert db_session.get(Photo, r.photo_id).model_version_id == world["v2"]


def test_no_landmark_gives_no_album_but_a_recognition_row(db_session: Session, world) -> None:
    r = _created(db_session, "users/alice/cat.jpg")
    apply_recognition(db_session, r.photo_id, "e1", world["v1"], _outcome(None, 0.1))
    rec = db_session.execute(select(Recognition).where(Recognition.photo_id == r.photo_id)).scalar_one()
    assert rec.landmark_id is None and rec.method.value == "none"
    assert _album_state(db_session) == []
    assert db_session.get(Photo, r.photo_id).status == PhotoStatus.done


def test_delete_removes_from_album_and_stale_result_is_ignored(db_session: Session, world) -> None:
    r = _created(db_session, "users/alice/d.jpg")
    apply_recognition(db_session, r.photo_id, "e1", world["v1"], _outcome("colosseum"))
    assert photos.record_removed(db_session, bucket="photos", key="users/alice/d.jpg").action == "deleted"
    assert _album_state(db_session) == []
    assert apply_recognition(db_session, r.photo_id, "e1", world["v1"], _outcome("colosseum")) == "stale"
    assert _album_state(db_session) == []
    assert photos.record_removed(db_session, bucket="photos", key="users/nobody/x.jpg").action == "ignored"


def test_overwrite_with_new_content_leaves_album_until_recognised(db_session: Session, world) -> None:
    r = _created(db_session, "users/alice/o.jpg", etag="e1")
    apply_recognition(db_session, r.photo_id, "e1", world["v1"], _outcome("colosseum"))
    again = _created(db_session, "users/alice/o.jpg", etag="e2")
    assert again.action == "recognize" and again.photo_id == r.photo_id
    assert _album_state(db_session) == []
    assert apply_recognition(db_session, r.photo_id, "e1", world["v1"], _outcome("colosseum")) == "stale"


def test_object_without_owner_is_recorded_failed_once(db_session: Session, world) -> None:
    r = _created(db_session, "misc/orphan.jpg", owner=None)
    assert r.action == "failed" and r.reason == "no_owner"
    _created(db_session, "misc/orphan.jpg", etag="e2", owner=None)
    photo = db_session.get(Photo, r.photo_id)
    assert photo.status == PhotoStatus.failed and "no_owner" in photo.error
    failures = db_session.execute(select(TaskFailure).where(TaskFailure.photo_id == r.photo_id)).scalars().all()
    assert len(failures) == 1 and failures[0].attempts == 2
