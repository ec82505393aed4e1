"""The cursor store against the real PostgreSQL (inside the test's rolled-back transaction)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import EventCursor
from workers.bridge.cursor import CursorStore

pytestmark = pytest.mark.integration


def test_missing_cursor_then_upserts(session_factory: sessionmaker[Session], db_session: Session) -> None:
    store = CursorStore(session_factory)
    assert store.load("seaweedfs:test") is None
    store.save("seaweedfs:test", 1_714_558_272_000_000_001)
    assert store.load("seaweedfs:test") == 1_714_558_272_000_000_001
    store.save("seaweedfs:test", 1_714_558_272_000_000_002)  # same name: updated, not a second row
    assert store.load("seaweedfs:test") == 1_714_558_272_000_000_002
    rows = db_session.execute(select(EventCursor).where(EventCursor.name == "seaweedfs:test")).scalars().all()
    assert [row.position for row in rows] == [1_714_558_272_000_000_002]


def test_cursors_are_independent_by_name(session_factory: sessionmaker[Session]) -> None:
    store = CursorStore(session_factory)
    store.save("seaweedfs:a", 10)
    store.save("seaweedfs:b", 20)
    assert (store.load("seaweedfs:a"), store.load("seaweedfs:b")) == (10, 20)
