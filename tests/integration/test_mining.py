"""Mining gallery candidates from uploads against the real PostgreSQL: the radius, the owner's privacy flag,
the opt-in setting on the albums task, and withdrawal when a photo is deleted or its owner stops sharing."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import GalleryPhoto, GalleryRole, Landmark, ModelStatus, ModelVersion, Photo, User
from shared.gallery import mining
from shared.photos import records as photos
from shared.settings import GallerySettings, Settings

pytestmark = pytest.mark.integration

COLOSSEUM = (41.8902, 12.4922)
NEAR_COLOSSEUM = (41.8915, 12.4930)  # about 160 m away
ARCH_OF_CONSTANTINE = (41.8898, 12.4906)  # about 140 m from the Colosseum: both are within 0.5 km


@pytest.fixture
def world(db_session: Session) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]  # the test database is shared: names of our own
    landmarks = {
        "colosseum": Landmark(slug=f"colosseum_{tag}", name="Colosseum", lat=COLOSSEUM[0], lon=COLOSSEUM[1]),
        "arch": Landmark(slug=f"arch_{tag}", name="Arch of Constantine", lat=ARCH_OF_CONSTANTINE[0],
                         lon=ARCH_OF_CONSTANTINE[1]),
        "pisa": Landmark(slug=f"pisa_{tag}", name="Leaning Tower", lat=43.7230, lon=10.3966),
        "closed": Landmark(slug=f"closed_{tag}", name="Inactive", lat=COLOSSEUM[0], lon=COLOSSEUM[1], active=False),
        "nowhere": Landmark(slug=f"nowhere_{tag}", name="No coordinates"),
    }  # fmt: skip
    version = ModelVersion(version=f"mining-{tag}", backbone="efficientnet_lite2", status=ModelStatus.active)
    db_session.add_all([*landmarks.values(), version])
    db_session.flush()
    return {"tag": tag, "version": version.id, **{k: v.id for k, v in landmarks.items()}}


def _photo(
    session: Session, owner: str, *, shares: bool, gps: tuple[float, float] | None, name: str = "p.jpg"
) -> uuid.UUID:
    result = photos.record_created(
        session, bucket="photos", key=f"users/{owner}/{name}", etag="e1", size=10, content_type="image/jpeg",
        owner=owner,
    )  # fmt: skip
    photo = session.get(Photo, result.photo_id)
    assert photo is not None and photo.owner is not None
    photo.owner.share_for_gallery = shares
    if gps:
        photo.lat, photo.lon = gps
    session.flush()
    return photo.id


def _mined(session: Session, photo_id: uuid.UUID) -> list[GalleryPhoto]:
    query = select(GalleryPhoto).where(GalleryPhoto.photo_id == photo_id).order_by(GalleryPhoto.landmark_id)
    return list(session.execute(query).scalars())


def test_a_sharing_owners_photo_near_landmarks_becomes_their_candidate(db_session: Session, world) -> None:
    owner = f"alice_{world['tag']}"
    photo_id = _photo(db_session, owner, shares=True, gps=NEAR_COLOSSEUM)
    result = mining.mine_photo(db_session, photo_id, radius_km=0.5)
    assert sorted(result.landmarks) == sorted([f"colosseum_{world['tag']}", f"arch_{world['tag']}"])
    rows = _mined(db_session, photo_id)
    assert {r.landmark_id for r in rows} == {world["colosseum"], world["arch"]}  # not Pisa, not the inactive one
    for row in rows:  # the row points at the user's own object: nothing was copied to the gallery bucket
        assert (row.bucket, row.key, row.role, row.source) == (
            "photos",
            f"users/{owner}/p.jpg",
            GalleryRole.candidate,
            "mined",
        )
    again = mining.mine_photo(db_session, photo_id, radius_km=0.5)
    assert again.landmarks == [] and len(_mined(db_session, photo_id)) == 2  # replaying changes nothing


def test_photos_of_owners_who_do_not_share_are_never_mined(db_session: Session, world) -> None:
    photo_id = _photo(db_session, f"bob_{world['tag']}", shares=False, gps=NEAR_COLOSSEUM)
    result = mining.mine_photo(db_session, photo_id, radius_km=0.5)
    assert result.skipped == "owner does not share photos for the gallery"
    assert _mined(db_session, photo_id) == []


def test_no_gps_or_outside_the_radius(db_session: Session, world) -> None:
    owner = f"carol_{world['tag']}"
    no_gps = _photo(db_session, owner, shares=True, gps=None, name="a.jpg")
    far = _photo(db_session, owner, shares=True, gps=(41.9029, 12.4534), name="b.jpg")  # St Peter's, ~3.3 km
    assert mining.mine_photo(db_session, no_gps, radius_km=0.5).skipped == "no GPS"
    assert mining.mine_photo(db_session, far, radius_km=0.5).landmarks == []
    assert [r.landmark_id for r in _mined(db_session, far)] == []
    assert mining.mine_photo(db_session, far, radius_km=5.0).landmarks != []  # a wider radius reaches it


def test_landmarks_across_the_antimeridian(db_session: Session, world) -> None:
    slug = f"dateline_{world['tag']}"
    db_session.add(Landmark(slug=slug, name="Dateline", lat=-16.5, lon=179.999))
    db_session.flush()
    near = mining.landmarks_within(db_session, -16.5, -179.999, 1.0)
    assert slug in [s for _, s, _ in near]


def test_withdrawn_when_deleted_or_when_the_owner_stops_sharing(db_session: Session, world) -> None:
    owner = f"dave_{world['tag']}"
    kept = _photo(db_session, owner, shares=True, gps=COLOSSEUM, name="kept.jpg")
    deleted = _photo(db_session, owner, shares=True, gps=COLOSSEUM, name="gone.jpg")
    for photo_id in (kept, deleted):
        mining.mine_photo(db_session, photo_id, radius_km=0.5)
    photos.record_removed(db_session, bucket="photos", key=f"users/{owner}/gone.jpg")
    # Deleting the photo withdraws its mined rows at once; the sweep cleaning runs finds nothing left of it.
    assert _mined(db_session, deleted) == [] and len(_mined(db_session, kept)) == 2
    mining.withdraw(db_session)
    assert _mined(db_session, deleted) == [] and len(_mined(db_session, kept)) == 2

    user = db_session.execute(select(User).where(User.name == owner)).scalar_one()
    user.share_for_gallery = False
    db_session.flush()
    assert mining.withdraw(db_session, owner_id=user.id) == 2
    assert _mined(db_session, kept) == []


@pytest.mark.parametrize("opt_in", [False, True])
def test_the_albums_task_mines_only_when_the_setting_opts_in(
    session_factory: sessionmaker[Session], db_session: Session, world, monkeypatch: pytest.MonkeyPatch, opt_in: bool
) -> None:
    import tasks.albums
    from tasks.context import WorkerContext

    photo_id = _photo(db_session, f"erin_{world['tag']}", shares=True, gps=None)
    db_session.commit()
    ctx = WorkerContext(Settings(gallery=GallerySettings(mine_uploads=opt_in, mining_radius_km=0.5)))
    ctx.__dict__["session_factory"] = session_factory  # the test's transaction instead of a new engine
    monkeypatch.setattr(tasks.albums, "context", lambda: ctx)
    outcome = {
        "matches": [{"landmark": None, "score": 0.1, "method": "none", "verified": False}],
        "meta": {"gps": list(NEAR_COLOSSEUM), "width": 10, "height": 10},
    }
    assert tasks.albums.apply_recognition(str(photo_id), "e1", world["version"], outcome) == "applied"
    db_session.expire_all()
    assert len(_mined(db_session, photo_id)) == (2 if opt_in else 0)


def _corrected(session: Session, owner: str, world, name: str) -> uuid.UUID:
    """A sharing owner's photo the owner assigned to the Colosseum and rejected from the arch: two user rows."""
    from shared.photos import corrections

    photo_id = _photo(session, owner, shares=True, gps=None, name=name)
    corrections.assign(session, photo_id, f"colosseum_{world['tag']}")
    corrections.assign(session, photo_id, f"arch_{world['tag']}")
    corrections.reject(session, photo_id, landmark=f"arch_{world['tag']}")
    return photo_id


def _from_user(session: Session, photo_id: uuid.UUID) -> list[GalleryRole]:
    rows = session.execute(select(GalleryPhoto).where(GalleryPhoto.photo_id == photo_id, GalleryPhoto.source == "user"))
    return sorted(row.role for row in rows.scalars())


def test_rows_from_user_corrections_are_withdrawn_on_delete_overwrite_and_unshare(db_session: Session, world) -> None:
    owner = f"erin_{world['tag']}"
    deleted, overwritten, kept = (_corrected(db_session, owner, world, f"{n}.jpg") for n in ("d", "o", "k"))
    assert _from_user(db_session, kept) == sorted([GalleryRole.candidate, GalleryRole.rejected])
    photos.record_removed(db_session, bucket="photos", key=f"users/{owner}/d.jpg")
    assert _from_user(db_session, deleted) == []
    photos.record_created(
        db_session, bucket="photos", key=f"users/{owner}/o.jpg", etag="new-content", size=1, content_type=None,
        owner=owner,
    )  # fmt: skip
    assert _from_user(db_session, overwritten) == []
    assert len(_from_user(db_session, kept)) == 2
    assert mining.set_sharing(db_session, owner, shares=False) == 2  # the owner opts out: withdrawn at once
    assert _from_user(db_session, kept) == []


def test_the_sweep_withdraws_user_rows_of_owners_who_no_longer_share(db_session: Session, world) -> None:
    owner = f"fay_{world['tag']}"
    photo_id = _corrected(db_session, owner, world, "s.jpg")
    db_session.execute(select(User).where(User.name == owner)).scalar_one().share_for_gallery = False
    db_session.flush()
    mining.withdraw(db_session)
    assert _from_user(db_session, photo_id) == []
