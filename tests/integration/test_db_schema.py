"""The migrated schema through the ORM: every model round trips; the constraints services rely on bite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from shared.db.models import (
    Album,
    AlbumPhoto,
    City,
    EventCursor,
    GalleryPhoto,
    GalleryRole,
    Landmark,
    ModelStatus,
    ModelVersion,
    Photo,
    PhotoStatus,
    Recognition,
    RecognitionMethod,
    TaskFailure,
    User,
)
from shared.db.session import session_scope

pytestmark = pytest.mark.integration

UNIQUE_VIOLATION = "23505"
CHECK_VIOLATION = "23514"


def _name(prefix: str) -> str:
    """Unique per test run: other sessions may use the same test database at the same time."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _violation(session: Session, obj: object) -> tuple[str, str]:
    """Flush ``obj`` in a savepoint; return (SQLSTATE, constraint name) of the error it must raise."""
    with pytest.raises(IntegrityError) as error, session.begin_nested():
        session.add(obj)
    return error.value.orig.pgcode, error.value.orig.diag.constraint_name  # type: ignore[union-attr]


def _raw_violation(session: Session, sql: str, **params: object) -> tuple[str, str]:
    with pytest.raises(IntegrityError) as error, session.begin_nested():
        session.execute(text(sql), params)
    return error.value.orig.pgcode, error.value.orig.diag.constraint_name  # type: ignore[union-attr]


@pytest.fixture
def world(db_session: Session) -> dict[str, object]:
    """One of every row, committed (to a savepoint) the way services commit."""
    user = User(name=_name("alice"))
    city = City(name=_name("Paris"), country="France")
    landmark = Landmark(slug=_name("eiffel-tower"), name="Eiffel Tower", city=city, lat=48.8584, lon=2.2945)
    version = ModelVersion(
        version=_name("v"),
        backbone="efficientnet_lite2",
        status=ModelStatus.active,
        metrics={"map@100": 0.81, "per_landmark": {"eiffel-tower": [0.9, 0.7]}},
        thresholds={"global": 0.62},
    )
    photo = Photo(
        bucket="photos",
        key=f"users/{user.name}/{uuid.uuid4()}.jpg",
        etag="d41d8cd98f00b204e9800998ecf8427e",
        size=123_456,
        content_type="image/jpeg",
        owner=user,
        taken_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        lat=48.858,
        lon=2.294,
        width=4032,
        height=3024,
        model_version=version,
    )
    gallery = GalleryPhoto(landmark=landmark, bucket="gallery", key=_name("eiffel/1.jpg"), role=GalleryRole.train)
    db_session.add_all([user, city, landmark, version, photo, gallery])
    db_session.flush()
    recognition = Recognition(
        photo_id=photo.id,
        model_version_id=version.id,
        landmark=landmark,
        score=0.87,
        method=RecognitionMethod.verified,
    )
    album = Album(owner=user, landmark=landmark, photo_count=1, cover_photo_id=photo.id)
    db_session.add_all([recognition, album])
    db_session.flush()
    membership = AlbumPhoto(album_id=album.id, photo_id=photo.id, score=0.87)
    failure = TaskFailure(photo_id=photo.id, task_name="recognition.recognize_photo", reason="decode: truncated")
    cursor = EventCursor(name=_name("seaweedfs"), position=1_732_536_000_123_456_789)
    db_session.add_all([membership, failure, cursor])
    db_session.commit()
    return {
        "user": user,
        "city": city,
        "landmark": landmark,
        "version": version,
        "photo": photo,
        "gallery": gallery,
        "recognition": recognition,
        "album": album,
        "membership": membership,
        "failure": failure,
        "cursor": cursor,
    }


def test_every_model_round_trips_with_its_server_defaults(db_session: Session, world: dict) -> None:
    ids = {name: db_session.identity_key(instance=obj)[1] for name, obj in world.items()}
    db_session.expunge_all()

    user = db_session.get_one(User, ids["user"])
    assert user.share_for_gallery is False
    assert user.created_at.tzinfo is not None
    assert db_session.get_one(City, ids["city"]).country == "France"
    landmark = db_session.get_one(Landmark, ids["landmark"])
    assert (landmark.active, landmark.country, landmark.lat) == (True, "", 48.8584)
    assert landmark.city is not None and landmark.city.id == ids["city"][0]
    version = db_session.get_one(ModelVersion, ids["version"])
    assert version.status is ModelStatus.active
    assert version.metrics == {"map@100": 0.81, "per_landmark": {"eiffel-tower": [0.9, 0.7]}}
    assert version.thresholds == {"global": 0.62}
    photo = db_session.get_one(Photo, ids["photo"])
    assert photo.status is PhotoStatus.pending
    assert (photo.size, photo.width, photo.height) == (123_456, 4032, 3024)
    assert photo.taken_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert photo.owner is not None and photo.owner.id == user.id
    assert photo.updated_at is not None and photo.processed_at is None
    gallery = db_session.get_one(GalleryPhoto, ids["gallery"])
    assert (gallery.role, gallery.source, gallery.split, gallery.photo_id) == (
        GalleryRole.train,
        "import",
        "train",
        None,
    )
    recognition = db_session.get_one(Recognition, ids["recognition"])
    assert (recognition.rank, recognition.verified, recognition.method) == (
        0,
        False,
        RecognitionMethod.verified,
    )
    album = db_session.get_one(Album, ids["album"])
    assert (album.photo_count, album.cover_photo_id, album.landmark.slug) == (1, photo.id, landmark.slug)
    membership = db_session.get_one(AlbumPhoto, ids["membership"])
    assert (membership.source, membership.score) == ("auto", 0.87)
    failure = db_session.get_one(TaskFailure, ids["failure"])
    assert (failure.attempts, failure.resolved_at, failure.photo_id) == (1, None, photo.id)
    cursor = db_session.get_one(EventCursor, ids["cursor"])
    assert cursor.position == 1_732_536_000_123_456_789


def test_metrics_are_stored_as_queryable_jsonb(db_session: Session, world: dict) -> None:
    version = world["version"]

    found = db_session.scalars(select(ModelVersion.id).where(ModelVersion.metrics["map@100"].as_float() > 0.8)).all()
    stored_as = db_session.scalar(
        text("SELECT pg_typeof(metrics)::text FROM model_versions WHERE id = :id"), {"id": version.id}
    )

    assert version.id in found
    assert stored_as == "jsonb"


def test_duplicate_photo_object_is_rejected(db_session: Session, world: dict) -> None:
    photo = world["photo"]

    assert _violation(db_session, Photo(bucket=photo.bucket, key=photo.key)) == (
        UNIQUE_VIOLATION,
        "uq_photos_bucket_key",
    )


def test_second_album_for_the_same_owner_and_landmark_is_rejected(db_session: Session, world: dict) -> None:
    album = world["album"]

    assert _violation(db_session, Album(owner_id=album.owner_id, landmark_id=album.landmark_id)) == (
        UNIQUE_VIOLATION,
        "uq_albums_owner_id_landmark_id",
    )


def test_recognition_rank_is_unique_per_photo_and_model_version(db_session: Session, world: dict) -> None:
    first = world["recognition"]
    duplicate = Recognition(
        photo_id=first.photo_id, model_version_id=first.model_version_id, rank=0, score=0.1, method="none"
    )

    assert _violation(db_session, duplicate) == (
        UNIQUE_VIOLATION,
        "uq_recognitions_photo_id_model_version_id_rank",
    )
    db_session.add(
        Recognition(photo_id=first.photo_id, model_version_id=first.model_version_id, rank=1, score=0.1, method="none")
    )
    db_session.flush()


def test_other_unique_keys(db_session: Session, world: dict) -> None:
    assert _violation(db_session, User(name=world["user"].name))[1] == "uq_users_name"
    assert _violation(db_session, Landmark(slug=world["landmark"].slug, name="x"))[1] == "uq_landmarks_slug"
    assert _violation(db_session, City(name=world["city"].name, country="France"))[1] == "uq_cities_name_country"
    assert (
        _violation(db_session, ModelVersion(version=world["version"].version, backbone="b", status="ready"))[1]
        == "uq_model_versions_version"
    )
    gallery = world["gallery"]
    assert (
        _violation(
            db_session,
            GalleryPhoto(landmark_id=gallery.landmark_id, bucket=gallery.bucket, key=gallery.key, role="train"),
        )[1]
        == "uq_gallery_photos_landmark_id_bucket_key"
    )


@pytest.mark.parametrize(
    ("table", "column", "constraint"),
    [
        ("photos", "status", "ck_photos_photo_status"),
        ("gallery_photos", "role", "ck_gallery_photos_gallery_role"),
        ("model_versions", "status", "ck_model_versions_model_status"),
        ("recognitions", "method", "ck_recognitions_recognition_method"),
    ],
)
def test_enum_columns_reject_unknown_values_in_raw_sql(
    db_session: Session, world: dict, table: str, column: str, constraint: str
) -> None:
    assert _raw_violation(db_session, f"UPDATE {table} SET {column} = 'bogus'") == (
        CHECK_VIOLATION,
        constraint,
    )


def test_every_enum_value_is_accepted_by_its_check(db_session: Session, world: dict) -> None:
    photo_id = world["photo"].id
    for status in PhotoStatus:
        db_session.execute(text("UPDATE photos SET status = :s WHERE id = :id"), {"s": status.value, "id": photo_id})

        assert db_session.scalar(select(Photo.status).where(Photo.id == photo_id)) is status
    for method in RecognitionMethod:
        db_session.execute(
            text("UPDATE recognitions SET method = :m WHERE photo_id = :id"),
            {"m": method.value, "id": photo_id},
        )

        assert db_session.scalar(select(Recognition.method).where(Recognition.photo_id == photo_id)) is method


def test_photo_count_cannot_go_negative(db_session: Session, world: dict) -> None:
    assert _raw_violation(db_session, "UPDATE albums SET photo_count = -1 WHERE id = :id", id=world["album"].id) == (
        CHECK_VIOLATION,
        "ck_albums_photo_count_nonnegative",
    )


def test_deleting_a_photo_cascades_and_unsets_covers(db_session: Session, world: dict) -> None:
    photo_id, album_id, gallery_id = world["photo"].id, world["album"].id, world["gallery"].id
    world["gallery"].photo_id = photo_id
    db_session.flush()

    db_session.execute(text("DELETE FROM photos WHERE id = :id"), {"id": photo_id})
    db_session.expunge_all()

    for model in (AlbumPhoto, Recognition, TaskFailure):
        count = db_session.scalar(select(func.count()).select_from(model).where(model.photo_id == photo_id))
        assert count == 0, model.__tablename__
    assert db_session.get_one(Album, album_id).cover_photo_id is None
    assert db_session.get_one(GalleryPhoto, gallery_id).photo_id is None


def test_deleting_a_user_who_owns_photos_is_refused(db_session: Session, world: dict) -> None:
    user = world["user"]

    code, constraint = _raw_violation(db_session, "DELETE FROM users WHERE id = :id", id=user.id)

    assert (code, constraint) == ("23503", "fk_photos_owner_id_users")


def test_session_factory_commits_are_seen_by_db_session_but_not_outside(
    db_session: Session, session_factory: sessionmaker[Session], pg_url: str
) -> None:
    name = _name("bob")
    with session_scope(session_factory) as session:
        session.add(User(name=name))

    assert db_session.scalar(select(User.id).where(User.name == name)) is not None
    outside = create_engine(pg_url, poolclass=NullPool)
    try:
        with outside.connect() as conn:
            assert conn.scalar(select(User.id).where(User.name == name)) is None
    finally:
        outside.dispose()


def test_a_failed_service_transaction_rolls_back_only_its_own_work(
    db_session: Session, session_factory: sessionmaker[Session], world: dict
) -> None:
    name = _name("carol")

    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(User(name=name))
        session.flush()
        session.add(User(name=world["user"].name))

    assert db_session.scalar(select(User.id).where(User.name == name)) is None
    assert db_session.scalar(select(User.id).where(User.name == world["user"].name)) is not None
