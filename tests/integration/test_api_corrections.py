"""shared.photos.corrections and its one hook in shared.photos.apply, called directly against the real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from shared.db.models import Landmark, ModelStatus, ModelVersion
from shared.photos import corrections
from shared.photos import records as photos
from shared.photos.apply import apply_recognition

pytestmark = pytest.mark.integration


def _outcome(*slugs: str) -> dict:
    matches = [
        {"landmark": s, "score": 0.8 - i / 10, "method": "global+verified", "verified": True}
        for i, s in enumerate(slugs)
    ]
    return {"matches": matches, "meta": {}}


@pytest.fixture
def photo(db_session: Session) -> tuple[uuid.UUID, int]:
    db_session.add_all([Landmark(slug="corr-a", name="A"), Landmark(slug="corr-b", name="B")])
    version = ModelVersion(version="corr-v1", backbone="efficientnet_lite2", status=ModelStatus.active)
    db_session.add(version)
    db_session.flush()
    result = photos.record_created(
        db_session, bucket="photos", key="users/corr/x.jpg", etag="e1", size=1, content_type="image/jpeg", owner="corr"
    )
    apply_recognition(db_session, result.photo_id, "e1", version.id, _outcome("corr-a", "corr-b"))
    return result.photo_id, version.id


def _albums(session: Session, photo_id: uuid.UUID) -> dict[str, str]:
    slugs = {lm.id: lm.slug for lm in session.query(Landmark).filter(Landmark.slug.like("corr-%"))}
    return {slugs[lm]: source for lm, (source, _) in corrections.memberships(session, photo_id).items()}


def test_apply_recognition_leaves_rejected_pairs_out(db_session: Session, photo) -> None:
    photo_id, version = photo
    assert _albums(db_session, photo_id) == {"corr-a": "auto", "corr-b": "auto"}
    result = corrections.reject(db_session, photo_id, landmark="corr-a", client="test")
    assert result.landmarks == ["corr-a"] and result.gallery_rows == 0
    assert _albums(db_session, photo_id) == {"corr-b": "auto"}
    apply_recognition(db_session, photo_id, "e1", version, _outcome("corr-a", "corr-b"))
    assert _albums(db_session, photo_id) == {"corr-b": "auto"}
    assert corrections.overridden_landmarks(db_session, photo_id) == {
        db_session.query(Landmark.id).filter(Landmark.slug == "corr-a").scalar()
    }


def test_the_latest_word_wins_and_forget_hands_back_to_recognition(db_session: Session, photo) -> None:
    photo_id, version = photo
    corrections.reject(db_session, photo_id)  # every album it is in
    assert _albums(db_session, photo_id) == {}
    corrections.assign(db_session, photo_id, "corr-a")
    assert _albums(db_session, photo_id) == {"corr-a": "manual"}
    assert [(s, str(k)) for s, k in corrections.corrections_of(db_session, photo_id)] == [
        ("corr-a", "assign"),
        ("corr-b", "reject"),
    ]
    assert corrections.forget(db_session, photo_id) == 2
    apply_recognition(db_session, photo_id, "e1", version, _outcome("corr-b"))
    assert _albums(db_session, photo_id) == {"corr-a": "manual", "corr-b": "auto"}


def test_refusals_name_the_problem(db_session: Session, photo) -> None:
    photo_id, _ = photo
    with pytest.raises(corrections.UnknownLandmark, match="corr-nowhere"):
        corrections.assign(db_session, photo_id, "corr-nowhere")
    with pytest.raises(corrections.PhotoNotFound):
        corrections.reject(db_session, uuid.uuid4())
    corrections.reject(db_session, photo_id)
    with pytest.raises(corrections.NotInAlbum):
        corrections.reject(db_session, photo_id)
