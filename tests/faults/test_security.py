"""Security properties checked on the fault stack after the faults ran (this file sorts after test_faults.py):
users never see each other's photos, and no process logged a credential, not even while its services failed.

(The webhook's token check is covered by tests/unit/test_bridge_webhook.py.)
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from shared.db.models import Photo, PhotoStatus
from shared.photos.albums import list_albums

if TYPE_CHECKING:
    from tests.faults.conftest import FaultStack

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]


def test_two_users_with_the_same_landmark_each_see_only_their_own_photos(faults: FaultStack) -> None:
    alice, bob = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("alice", "bob"))
    mine = {
        alice: [f"users/{alice}/taj_mahal.jpg", f"users/{alice}/eiffel_tower.jpg"],
        bob: [f"users/{bob}/taj_mahal_closer.jpg"],
    }
    faults.upload(mine[alice][0], faults.photo("alice/taj_mahal.jpg"), alice)
    faults.upload(mine[alice][1], faults.photo("alice/eiffel_tower.jpg"), alice)
    faults.upload(mine[bob][0], faults.photo("bob/taj_mahal_closer.jpg"), bob)
    photos = faults.final([*mine[alice], *mine[bob]])
    assert {p.status for p in photos.values()} == {PhotoStatus.done}

    with faults.factory() as session:
        for owner in (alice, bob):
            albums = [album for group in list_albums(session, owner).values() for album in group]
            keys = {p.key for album in albums for p in album.photos}
            assert keys and keys <= set(mine[owner]), (owner, keys)
            assert all(album.photo_count == len(album.photos) for album in albums)
        slugs = {
            owner: {a.landmark_slug for group in list_albums(session, owner).values() for a in group}
            for owner in (alice, bob)
        }
        assert "taj_mahal" in slugs[alice] & slugs[bob]  # the same landmark: two albums, one per user
        owners = dict(session.execute(select(Photo.key, Photo.owner_id).where(Photo.key.in_(list(photos)))).all())
    assert owners[mine[alice][0]] != owners[mine[bob][0]]
    assert faults.audit() == []  # among others: no album anywhere holds a photo of another owner


def test_no_log_holds_the_s3_secret_or_the_database_password(faults: FaultStack) -> None:
    secrets = {
        "S3 secret key": faults.settings.s3.secret_key.get_secret_value(),
        "database password": faults.db_password,
    }
    files = faults.log_files()
    assert {p.name for p in files} >= {"worker-ingest.log", "worker-recognize.log", "bridge-seaweedfs.log"}
    text = {path.name: path.read_text(errors="replace") for path in files}
    assert any('"task_finished"' in body for body in text.values())  # the logs of real work, not empty files
    leaks = [(what, name) for what, secret in secrets.items() for name, body in text.items() if secret in body]
    assert leaks == []
