"""Album membership under concurrent writers, in two real PostgreSQL sessions (committed, in a scratch database).

One task takes an album's last photo out (the album is deleted) while another adds a photo to the same album:
the second must neither hit a foreign-key error nor lose its photo, in the recognition path and in a user's
correction (the API's path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import migrate
from shared.db.models import Album, AlbumPhoto, Landmark
from shared.db.session import make_engine, make_session_factory, session_scope
from shared.photos import albums, corrections
from shared.photos import records as photos

pytestmark = pytest.mark.integration


@pytest.fixture
def factory(make_scratch_database) -> Iterator[sessionmaker[Session]]:
    url = make_scratch_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def _setup(factory: sessionmaker[Session]) -> tuple[int, int, object, object]:
    """alice's Colosseum album holding photo ``first``; photo ``second`` not yet in any album."""
    with session_scope(factory) as s:
        landmark = Landmark(slug="colosseum", name="Colosseum", country="Italy")
        s.add(landmark)
        s.flush()
        made = [
            photos.record_created(
                s, bucket="photos", key=f"users/alice/{n}.jpg", etag="e", size=1, content_type=None, owner="alice"
            )
            for n in ("first", "second")
        ]
        owner = photos.ensure_user(s, "alice")
        albums.set_photo_landmarks(s, made[0].photo_id, owner, {landmark.id: 0.9})
        return landmark.id, owner, made[0].photo_id, made[1].photo_id


def _with_last_photo_leaving_before_the_lock(
    monkeypatch: pytest.MonkeyPatch, factory: sessionmaker[Session], leaving: object
) -> None:
    """Run, in a second session, the removal of the album's last photo just before the adding task locks it."""
    real_lock: Callable[..., object] = albums._lock
    done = []

    def lock_after_the_other_task(session: Session, album_ids: set[int]) -> object:
        if not done:
            done.append(True)
            with session_scope(factory) as other:
                albums.remove_photo(other, leaving)  # the album is empty: deleted, committed
        return real_lock(session, album_ids)

    monkeypatch.setattr(albums, "_lock", lock_after_the_other_task)


def _albums(factory: sessionmaker[Session]) -> list[tuple[int, int]]:
    with factory() as s:
        members = select(func.count()).select_from(AlbumPhoto).where(AlbumPhoto.album_id == Album.id).scalar_subquery()
        return [(a.photo_count, n) for a, n in s.execute(select(Album, members)).all()]


def test_a_photo_added_while_the_album_is_deleted_lands_in_a_new_album(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    landmark, owner, first, second = _setup(factory)
    _with_last_photo_leaving_before_the_lock(monkeypatch, factory, first)
    with session_scope(factory) as s:
        albums.set_photo_landmarks(s, second, owner, {landmark: 0.8})
    assert _albums(factory) == [(1, 1)]


def test_a_correction_racing_the_albums_deletion_succeeds(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    landmark, owner, first, second = _setup(factory)
    _with_last_photo_leaving_before_the_lock(monkeypatch, factory, first)
    with session_scope(factory) as s:
        corrections.assign(s, second, "colosseum", client="test")
    assert _albums(factory) == [(1, 1)]
