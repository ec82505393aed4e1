"""Photo, album and failure services against the real PostgreSQL: idempotency and counts equal membership."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import (
    Album,
    AlbumPhoto,
    City,
    Landmark,
    ModelStatus,
    ModelVersion,
    Photo,
    PhotoStatus,
    Recognition,
    TaskFailure,
)
from shared.photos import albums
from shared.photos import records as photos
from shared.photos.apply import apply_recognition

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


def test_late_failure_of_replaced_content_leaves_the_new_version_pending(db_session: Session, world) -> None:
    from shared.photos.failures import record_failure_if_current

    r = _created(db_session, "users/alice/late.jpg", etag="e1")
    assert _created(db_session, "users/alice/late.jpg", etag="e2").action == "recognize"  # v2 uploaded meanwhile
    late = record_failure_if_current(
        db_session, photo_id=r.photo_id, etag="e1", task_name="t", reason="undecodable", message="v1 was bad"
    )
    assert late is None
    assert db_session.get(Photo, r.photo_id).status == PhotoStatus.pending
    assert db_session.execute(select(TaskFailure).where(TaskFailure.photo_id == r.photo_id)).first() is None
    current = record_failure_if_current(
        db_session, photo_id=r.photo_id, etag="e2", task_name="t", reason="undecodable", message="v2 is bad too"
    )
    assert current is not None and db_session.get(Photo, r.photo_id).status == PhotoStatus.failed


def test_late_failure_of_a_deleted_photo_is_dropped(db_session: Session, world) -> None:
    from shared.photos.failures import record_failure_if_current

    r = _created(db_session, "users/alice/gone-late.jpg", etag="e1")
    photos.record_removed(db_session, bucket="photos", key="users/alice/gone-late.jpg")
    failure = record_failure_if_current(
        db_session, photo_id=r.photo_id, etag="e1", task_name="t", reason="object_missing", message="gone"
    )
    assert failure is None and db_session.get(Photo, r.photo_id).status == PhotoStatus.deleted


def test_older_model_versions_result_landing_late_is_ignored(db_session: Session, world) -> None:
    from datetime import UTC, datetime, timedelta

    v1, v2 = db_session.get(ModelVersion, world["v1"]), db_session.get(ModelVersion, world["v2"])
    v1.activated_at = datetime.now(UTC) - timedelta(hours=1)
    v2.activated_at, v1.status, v2.status = datetime.now(UTC), ModelStatus.retired, ModelStatus.active
    r = _created(db_session, "users/alice/v.jpg")
    assert apply_recognition(db_session, r.photo_id, "e1", world["v2"], _outcome("pisa_tower")) == "applied"
    assert apply_recognition(db_session, r.photo_id, "e1", world["v1"], _outcome("colosseum")) == "superseded"
    owner = db_session.get(Photo, r.photo_id).owner_id
    assert _album_state(db_session) == [(owner, world["pisa"], 1)]
    assert db_session.get(Photo, r.photo_id).model_version_id == world["v2"]
    # A rollback activates v1 again: its results apply once more.
    v1.activated_at, v1.status, v2.status = (
        datetime.now(UTC) + timedelta(seconds=1),
        ModelStatus.active,
        ModelStatus.retired,
    )
    assert apply_recognition(db_session, r.photo_id, "e1", world["v1"], _outcome("colosseum")) == "applied"
    assert _album_state(db_session) == [(owner, world["colosseum"], 1)]


def test_the_key_layout_decides_the_owner_and_disagreeing_metadata_is_a_conflict() -> None:
    assert photos.decide_owner("users/bob/x.jpg", {"X-Amz-Meta-User": "alice"}).reason == "owner_conflict"
    assert photos.decide_owner("users/bob/x.jpg", {"user": "bob"}) == photos.Ownership("bob")
    assert photos.decide_owner("x.jpg", {"user": "alice", "owner": "bob"}).reason == "owner_conflict"
    assert photos.decide_owner("x.jpg", {}).reason == "no_owner"


def test_an_owner_conflict_on_overwrite_takes_the_photo_out_of_its_owners_albums(db_session: Session, world) -> None:
    r = _created(db_session, "users/alice/c.jpg")
    apply_recognition(db_session, r.photo_id, "e1", world["v1"], _outcome("colosseum"))
    conflict = photos.decide_owner("users/alice/c.jpg", {"user": "mallory"})
    again = photos.record_created(
        db_session, bucket="photos", key="users/alice/c.jpg", etag="e1", size=10, content_type=None,
        owner=conflict.owner, ownership=conflict,
    )  # fmt: skip
    assert (again.action, again.reason) == ("failed", "owner_conflict")
    assert _album_state(db_session) == []


def test_an_overlong_or_nul_content_type_is_stored_cut_never_a_database_error(db_session: Session, world) -> None:
    for key, content_type in (("long.jpg", "image/jpeg; x=" + "a" * 400), ("nul.jpg", "image/\x00jpeg")):
        result = photos.record_created(
            db_session, bucket="photos", key=key, etag="e1", size=10, content_type=content_type, owner="alice"
        )
        db_session.flush()
        assert result.action == "recognize"
        stored = db_session.get(Photo, result.photo_id).content_type
        assert stored == content_type.replace("\x00", "")[: photos.CONTENT_TYPE_CHARS]


def test_place_photos_says_where_each_upload_went(db_session: Session, world) -> None:
    rome = City(name="Rome", country="Italy")
    db_session.add(rome)
    db_session.flush()
    db_session.get(Landmark, world["colosseum"]).city_id = rome.id
    landmark = _created(db_session, "users/alice/colosseum.jpg")
    apply_recognition(db_session, landmark.photo_id, "e1", world["v1"], _outcome("colosseum"))
    cat = _created(db_session, "users/alice/cat.jpg")
    apply_recognition(db_session, cat.photo_id, "e1", world["v1"], _outcome(None, 0.1))
    _created(db_session, "misc/orphan.jpg", owner=None)
    _created(db_session, "users/alice/queued.jpg")
    keys = ["users/alice/queued.jpg", "users/alice/colosseum.jpg", "misc/orphan.jpg", "users/alice/cat.jpg", "none"]

    placed = albums.place_photos(db_session, "photos", keys)

    assert list(placed) == keys
    assert (placed[keys[1]].status, placed[keys[1]].albums) == ("done", [("Colosseum", "Rome, Italy")])
    assert (placed[keys[3]].status, placed[keys[3]].albums) == ("done", [])
    assert placed[keys[2]].status == "failed" and "no_owner" in placed[keys[2]].error
    assert (placed[keys[0]].status, placed[keys[0]].error) == ("pending", None)
    assert placed["none"].status == "missing"
