"""The owner rule end to end with a real S3 client (minio's): server-side copies and a multipart upload go through
`weed mini`, the SeaweedFS bridge and the workers like any upload.

The key prefix ``users/<user>/`` decides the owner where it names one; a copy that carries the source's
``x-amz-meta-user`` into another user's folder fails as ``owner_conflict`` instead of being filed as the
source owner's photo (it was, before: shown to alice and missing for its owner).
"""

from __future__ import annotations

import io
import uuid
from typing import TYPE_CHECKING

import pytest
from minio.commonconfig import REPLACE, CopySource

from shared.db.models import PhotoStatus, User
from tests.integration.test_upload_to_album import albums_of, demo_photo, user, wait_final

if TYPE_CHECKING:
    from tests.integration.conftest import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PART = 5 * 1024 * 1024  # S3's smallest multipart part


def test_a_server_side_copy_into_another_users_folder_is_an_owner_conflict(e2e: RunningStack) -> None:
    alice, bob = user("alice"), user("bob")
    original, copied = f"users/{alice}/taj_mahal.jpg", f"users/{bob}/copied_taj.jpg"
    e2e.upload(original, demo_photo(e2e, "alice", "taj_mahal.jpg"), owner=alice)
    wait_final(e2e, [original])
    e2e.minio.copy_object(e2e.bucket, copied, CopySource(e2e.bucket, original))  # metadata copied: user=alice
    photos = wait_final(e2e, [copied])
    assert photos[copied].status == PhotoStatus.failed and (photos[copied].error or "").startswith("owner_conflict")
    assert photos[copied].owner_id is None
    with e2e.factory() as session:
        assert albums_of(session, alice) == {"taj_mahal": [original]}
        assert albums_of(session, bob) == {}


def test_a_metadata_replacing_copy_is_filed_under_the_owner_it_names(e2e: RunningStack) -> None:
    alice, dave, erin = user("alice"), user("dave"), user("erin")
    original = f"users/{alice}/eiffel.jpg"
    into_folder, outside = f"users/{dave}/eiffel_copy.jpg", f"inbox/{uuid.uuid4().hex[:6]}/eiffel.jpg"
    e2e.upload(original, demo_photo(e2e, "alice", "eiffel_tower.jpg"), owner=alice)
    wait_final(e2e, [original])
    for key, owner in ((into_folder, dave), (outside, erin)):
        e2e.minio.copy_object(
            e2e.bucket, key, CopySource(e2e.bucket, original), metadata={"user": owner}, metadata_directive=REPLACE
        )
    photos = wait_final(e2e, [into_folder, outside])
    assert {p.status for p in photos.values()} == {PhotoStatus.done}
    with e2e.factory() as session:
        owners = {key: session.get(User, p.owner_id).name for key, p in photos.items()}
        assert owners == {into_folder: dave, outside: erin}
        assert albums_of(session, dave) == {"eiffel_tower": [into_folder]}
        assert albums_of(session, erin) == {"eiffel_tower": [outside]}
        assert albums_of(session, alice) == {"eiffel_tower": [original]}


def test_a_multipart_upload_is_recognised_with_its_multipart_etag(e2e: RunningStack) -> None:
    carol = user("carol")
    key = f"users/{carol}/colosseum_big.jpg"
    data = demo_photo(e2e, "alice", "colosseum.jpg")
    data += b"\0" * (PART + 1024 - len(data))  # two parts; JPEG decoders stop at the end-of-image marker
    result = e2e.minio.put_object(
        e2e.bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg", part_size=PART
    )
    assert result.etag.endswith("-2")  # S3 made it of two parts
    photo = wait_final(e2e, [key])[key]
    assert photo.status == PhotoStatus.done and photo.etag == result.etag and photo.size == len(data)
    with e2e.factory() as session:
        assert albums_of(session, carol) == {"colosseum": [key]}
