"""Durable stream positions in PostgreSQL (``event_cursors``), so a restarted bridge resumes where it stopped."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import EventCursor
from shared.db.session import session_scope


class Cursors(Protocol):
    """What a stream follower needs of a cursor store."""

    def load(self, name: str) -> int | None: ...

    def save(self, name: str, position: int) -> None: ...


class CursorStore:
    """Load and save named positions; each save is its own committed transaction (an upsert)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def load(self, name: str) -> int | None:
        with session_scope(self._factory) as db:
            return db.scalar(select(EventCursor.position).where(EventCursor.name == name))

    def save(self, name: str, position: int) -> None:
        statement = insert(EventCursor).values(name=name, position=position)
        statement = statement.on_conflict_do_update(
            index_elements=[EventCursor.name],
            set_={"position": statement.excluded.position, "updated_at": func.now()},
        )
        with session_scope(self._factory) as db:
            db.execute(statement)
