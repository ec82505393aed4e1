"""Every query behind `landmarks status`, the albums API, the reprocess feeder and the sweep reads by an index.

A seeded table (5,000 photos, 2,000 in one album) is analysed, sequential scans are priced out
(``enable_seqscan = off``: the planner still picks one when no index can serve the query), the functions run, and
each statement they sent is EXPLAINed with its parameters. Photo counts on a large table come from the planner's
estimates ("about"), not a scan.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from shared.db.models import Album, Landmark, User
from shared.ops import jobs, sweep
from shared.ops.selectors import PhotoSelector
from shared.ops.status import photo_counts, session_rows
from shared.photos.records import claim_stuck_photo_ids
from workers.api.queries import album_page

pytestmark = pytest.mark.integration

N_PHOTOS = 5000
WATCHED = ("photos", "album_photos")


@pytest.fixture
def seeded(db_session: Session) -> dict:
    user = User(name="plans-user")
    landmark = Landmark(slug="plans_tower", name="Plans Tower")
    db_session.add_all([user, landmark])
    db_session.flush()
    db_session.execute(
        text(
            """
            INSERT INTO photos (id, bucket, key, etag, owner_id, status, created_at, updated_at)
            SELECT gen_random_uuid(), 'plans', 'users/plans-user/' || lpad(i::text, 6, '0') || '.jpg', 'e', :owner,
                   (ARRAY['pending','processing','done','failed','deleted'])[1 + i % 5],
                   timestamptz '2024-01-01' + i * interval '1 minute', timestamptz '2024-01-01'
            FROM generate_series(1, :n) AS i
            """
        ),
        {"owner": user.id, "n": N_PHOTOS},
    )
    album = Album(owner_id=user.id, landmark_id=landmark.id, photo_count=2000)
    db_session.add(album)
    db_session.flush()
    db_session.execute(
        text(
            "INSERT INTO album_photos (album_id, photo_id, added_at) "
            "SELECT :album, id, created_at FROM photos WHERE bucket = 'plans' ORDER BY created_at LIMIT 2000"
        ),
        {"album": album.id},
    )
    db_session.execute(text("ANALYZE photos"))
    db_session.execute(text("ANALYZE album_photos"))
    db_session.execute(text("SET LOCAL enable_seqscan = off"))
    return {"user": user, "album": album}


def plans(session: Session, run: Callable[[], object]) -> list[tuple[str, str]]:
    """(statement, plan) for every statement ``run`` sent on the session's connection."""
    sent: list[tuple[str, object]] = []
    connection = session.connection()

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "WITH")):
            sent.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    out = []
    for statement, parameters in sent:
        rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        out.append((statement, "\n".join(r[0] for r in rows)))
    return out


def assert_indexed(found: list[tuple[str, str]]) -> None:
    assert found, "nothing was executed"
    for statement, plan in found:
        for table in WATCHED:
            assert f"Seq Scan on {table}" not in plan, f"{statement}\n{plan}"


def test_album_page_uses_indexes(db_session: Session, seeded) -> None:
    found = plans(db_session, lambda: album_page(db_session, "plans-user", "plans_tower", limit=50))
    assert_indexed(found)
    assert any("ix_album_photos_album_added" in plan for _, plan in found)


def test_feeder_pages_use_the_keyset_index(db_session: Session, seeded) -> None:
    marker = datetime(2999, 1, 1, tzinfo=UTC)
    after = (datetime(2024, 1, 2, tzinfo=UTC), uuid.uuid4())
    found = plans(
        db_session, lambda: jobs.next_page(db_session, PhotoSelector(all=True), marker=marker, after=after, limit=500)
    )
    assert_indexed(found)
    assert any("ix_photos_created_at_id" in plan for _, plan in found)


def test_sweep_ranges_use_the_bytewise_key_index(db_session: Session, seeded) -> None:
    found = plans(
        db_session,
        lambda: sweep.rows_in_range(db_session, "plans", after="users/plans-user/000100", upto=None, limit=1000),
    )
    assert_indexed(found)
    assert any("ix_photos_bucket_key_c" in plan for _, plan in found)


def test_stuck_photos_use_the_partial_index(db_session: Session, seeded) -> None:
    found = plans(db_session, lambda: claim_stuck_photo_ids(db_session, older_than_s=600, limit=1000))
    assert_indexed(found)
    assert any("ix_photos_unfinished_updated_at" in plan for _, plan in found)


def test_status_counts_on_a_large_table_are_estimates_without_a_scan(db_session: Session, seeded) -> None:
    result: list = []
    found = plans(db_session, lambda: result.extend(photo_counts(session_rows(db_session), exact_below=0)))
    counts, about = result
    assert about and all(f"on {table}" not in plan for _, plan in found for table in WATCHED)
    assert sum(counts.values()) >= N_PHOTOS  # the table holds other tests' committed rows too, if any
    assert counts["done"] == pytest.approx(counts["pending"], rel=0.5)
    exact, about = photo_counts(session_rows(db_session))  # below the threshold: counted exactly
    assert not about and sum(exact.values()) >= N_PHOTOS
