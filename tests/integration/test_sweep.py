"""The reconciliation sweep against the real PostgreSQL with a fake bucket listing (shared.ops.sweep): the merge of
listing and rows page by page, sweep events with the listed eTag and size, deletes only when the object is really
gone and within the share, restored rows, the advisory lock, resuming a killed sweep, and the database clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import Photo, PhotoStatus, SweepCursor
from shared.ops.locks import SWEEP_LOCK, lock_key
from shared.ops.sweep import sweep_bucket
from shared.photos import records as photos
from shared.storage import ObjectInfo

pytestmark = pytest.mark.integration

LONG_AGO = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def bucket() -> str:
    return f"sweep-{uuid.uuid4().hex[:8]}"


def row(session: Session, bucket: str, key: str, *, etag: str = "e1", status: PhotoStatus = PhotoStatus.done) -> Photo:
    result = photos.record_created(
        session, bucket=bucket, key=key, etag=etag, size=10, content_type=None, owner="sweep-user"
    )
    photo = session.get(Photo, result.photo_id)
    photo.status, photo.created_at, photo.updated_at = status, LONG_AGO, LONG_AGO
    session.flush()
    return photo


def obj(bucket: str, key: str, etag: str = "e1", *, modified: datetime = LONG_AGO) -> ObjectInfo:
    return ObjectInfo(bucket=bucket, key=key, size=123, etag=etag, last_modified=modified)


class Bucket:
    """A fake listing (key order, start_after) and stat, and what the sweep sent."""

    def __init__(self, objects: list[ObjectInfo], *, present: set[str] = frozenset(), fail_after: int | None = None):
        self.objects = sorted(objects, key=lambda o: o.key)
        self.present = set(present) | {o.key for o in objects}
        self.fail_after = fail_after
        self.starts: list[str | None] = []
        self.sent: list[ObjectInfo] = []
        self.requeued: list[uuid.UUID] = []
        self.stats: list[str] = []

    def list_after(self, after: str | None):
        self.starts.append(after)
        for n, info in enumerate(o for o in self.objects if after is None or o.key > after):
            if self.fail_after is not None and n >= self.fail_after:
                raise MemoryError("killed mid-listing")
            yield info

    def exists(self, key: str) -> bool:
        self.stats.append(key)
        return key in self.present

    def sweep(self, factory: sessionmaker[Session], bucket: str, **options):
        options = {"page_size": 2, **options}
        return sweep_bucket(factory, bucket, list_after=self.list_after, exists=self.exists,
                            send_created=self.sent.append, requeue=self.requeued.extend, **options)  # fmt: skip


def test_the_merge_finds_every_kind_of_difference_across_pages(
    session_factory: sessionmaker[Session], db_session: Session, bucket: str
) -> None:
    row(db_session, bucket, "users/u/b.jpg")
    row(db_session, bucket, "users/u/c.jpg", status=PhotoStatus.deleted)
    row(db_session, bucket, "users/u/d.jpg", etag="old")
    row(db_session, bucket, "users/u/e.jpg")  # its object is gone: a lost delete
    row(db_session, bucket, "users/u/z.jpg")  # after the last listed key, gone too
    keys = ["users/u/a.jpg", "users/u/b.jpg", "users/u/c.jpg", "users/u/d.jpg", "users/u/f.jpg"]
    fake = Bucket([obj(bucket, k, "new" if k.endswith("d.jpg") else "e1") for k in keys])

    report = fake.sweep(session_factory, bucket)

    sent = {info.key: (info.etag, info.size) for info in fake.sent}
    assert sent == {"users/u/a.jpg": ("e1", 123), "users/u/c.jpg": ("e1", 123), "users/u/d.jpg": ("new", 123),
                    "users/u/f.jpg": ("e1", 123)}  # fmt: skip
    assert (report.listed, report.enqueued, report.restored, report.changed, report.removed) == (5, 2, 1, 1, 2)
    assert sorted(fake.stats) == ["users/u/e.jpg", "users/u/z.jpg"]  # a delete is applied only after a stat
    db_session.expire_all()
    statuses = {p.key: p.status for p in db_session.execute(select(Photo).where(Photo.bucket == bucket)).scalars()}
    assert statuses["users/u/e.jpg"] == statuses["users/u/z.jpg"] == PhotoStatus.deleted
    assert statuses["users/u/b.jpg"] == PhotoStatus.done
    assert db_session.get(SweepCursor, bucket) is None  # a finished sweep leaves no cursor


def test_a_row_missing_from_the_listing_whose_object_exists_is_kept(
    session_factory: sessionmaker[Session], db_session: Session, bucket: str
) -> None:
    kept = row(db_session, bucket, "users/u/listed-late.jpg")
    report = Bucket([], present={"users/u/listed-late.jpg"}).sweep(session_factory, bucket)
    assert (report.kept, report.removed) == (1, 0)
    db_session.expire_all()
    assert db_session.get(Photo, kept.id).status == PhotoStatus.done


def test_a_listing_that_would_delete_more_than_the_share_deletes_nothing(
    session_factory: sessionmaker[Session], db_session: Session, bucket: str
) -> None:
    for i in range(40):
        row(db_session, bucket, f"users/u/{i:03d}.jpg")
    listed = [obj(bucket, f"users/u/{i:03d}.jpg") for i in range(25)]  # 15 of 40 missing: over 10% and over 10
    fake = Bucket(listed)

    report = fake.sweep(session_factory, bucket, max_delete_share=0.10)

    assert (report.refused, report.removed) == (15, 0) and fake.stats == []
    db_session.expire_all()
    deleted = db_session.execute(
        select(func.count()).where(Photo.bucket == bucket, Photo.status == PhotoStatus.deleted)
    ).scalar_one()
    assert deleted == 0
    assert Bucket(listed).sweep(session_factory, bucket, max_delete_share=0.5).removed == 15


def test_objects_modified_lately_are_left_to_their_own_event(
    session_factory: sessionmaker[Session], db_session: Session, bucket: str
) -> None:
    now = datetime.now(UTC)
    fake = Bucket([obj(bucket, "users/u/fresh.jpg", modified=now), obj(bucket, "users/u/old.jpg")])
    report = fake.sweep(session_factory, bucket, stuck_after_s=600)
    assert [i.key for i in fake.sent] == ["users/u/old.jpg"] and report.skipped_recent == 1


def test_sweeps_never_overlap(
    session_factory: sessionmaker[Session], db_session: Session, db_engine: Engine, bucket: str
) -> None:
    fake = Bucket([obj(bucket, "users/u/a.jpg")])
    with db_engine.connect() as other:
        assert other.execute(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK, lock_key(bucket)))).scalar_one()
        report = fake.sweep(session_factory, bucket)
        other.rollback()
    assert report.busy and fake.sent == [] and fake.starts == []
    assert fake.sweep(session_factory, bucket).enqueued == 1


def test_a_killed_sweep_resumes_after_its_last_finished_page(
    session_factory: sessionmaker[Session], db_session: Session, bucket: str
) -> None:
    keys = [f"users/u/{i}.jpg" for i in range(7)]
    killed = Bucket([obj(bucket, k) for k in keys], fail_after=5)
    with pytest.raises(MemoryError):
        killed.sweep(session_factory, bucket)
    assert [i.key for i in killed.sent] == keys[:4]  # two full pages were merged before the kill
    assert db_session.get(SweepCursor, bucket).after_key == keys[3]

    again = Bucket([obj(bucket, k) for k in keys])
    report = again.sweep(session_factory, bucket)
    assert again.starts == [keys[3]] and report.resumed
    assert [i.key for i in again.sent] == keys[4:]
    db_session.expire_all()
    assert db_session.get(SweepCursor, bucket) is None


def test_stuck_photos_by_the_database_clock_are_requeued_once(
    session_factory: sessionmaker[Session], db_session: Session, bucket: str
) -> None:
    stuck = row(db_session, bucket, "users/u/stuck.jpg", status=PhotoStatus.processing)
    fresh = row(db_session, bucket, "users/u/fresh.jpg", status=PhotoStatus.pending)
    fresh.updated_at = db_session.execute(select(func.now())).scalar_one()
    db_session.flush()
    listing = [obj(bucket, "users/u/stuck.jpg"), obj(bucket, "users/u/fresh.jpg")]

    first = Bucket(listing)
    first.sweep(session_factory, bucket, stuck_after_s=600)
    assert stuck.id in first.requeued and fresh.id not in first.requeued
    second = Bucket(listing)
    second.sweep(session_factory, bucket, stuck_after_s=600)
    assert stuck.id not in second.requeued  # already queued by the first sweep


def test_an_event_without_an_etag_never_counts_as_new_content(db_session: Session, bucket: str) -> None:
    photo = row(db_session, bucket, "users/u/a.jpg", etag="real")
    result = photos.record_created(
        db_session, bucket=bucket, key="users/u/a.jpg", etag="", size=0, content_type=None, owner="sweep-user"
    )
    assert result.action == "unchanged"
    assert db_session.get(Photo, photo.id).etag == "real"


def test_events_apply_in_their_per_key_order(db_session: Session, bucket: str) -> None:
    photo = row(db_session, bucket, "users/u/a.jpg")
    photo.event_seq = photos.event_order("0055AFDB3D2C4E1E")
    removed = photos.record_removed(db_session, bucket=bucket, key="users/u/a.jpg", sequencer="0055AFDB3D2C4E1F")
    assert removed.action == "deleted"
    late_create = photos.record_created(db_session, bucket=bucket, key="users/u/a.jpg", etag="e1", size=1,
                                        content_type=None, owner="sweep-user", sequencer="55AFDB3D2C4E1E")  # fmt: skip
    assert (late_create.action, late_create.reason) == ("ignored", "older event")
    assert db_session.get(Photo, photo.id).status == PhotoStatus.deleted
    newer = photos.record_created(db_session, bucket=bucket, key="users/u/a.jpg", etag="e2", size=1,
                                  content_type=None, owner="sweep-user", sequencer="0055AFDB3D2C4E20")  # fmt: skip
    assert newer.action == "recognize"
    stale_delete = photos.record_removed(db_session, bucket=bucket, key="users/u/a.jpg", sequencer="01")
    assert stale_delete.action == "ignored" and db_session.get(Photo, photo.id).status == PhotoStatus.pending


def test_event_order_compares_sequencers_as_hex_numbers() -> None:
    assert photos.event_order("ff") > photos.event_order("0f")
    assert photos.event_order("100") > photos.event_order("ff")  # longer is later, as a number
    assert photos.event_order(None) is None and photos.event_order("not-hex") is None
