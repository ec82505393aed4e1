"""Fixtures the whole suite shares: the test database, transactional sessions, and ../shared/data.

Nothing here connects at import or collection time: unit tests never need PostgreSQL, and the first
integration fixture that does fails the test with a message naming PostgreSQL and the URL.

Database tests run inside one outer transaction per test that is rolled back at the end; code under test may
commit (its commits become SAVEPOINT releases), so tests need no cleanup and may run in any order.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/landmarks"
TEST_DATABASE = os.environ.get("LANDMARKS_TEST_DATABASE") or "landmarks_test"


def database_url_for(database: str = TEST_DATABASE) -> str:
    """A database named ``database`` on the server of LANDMARKS_DATABASE_URL (never the real one)."""
    base = os.environ.get("LANDMARKS_DATABASE_URL") or DEFAULT_DATABASE_URL
    return make_url(base).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of ``landmarks_test``, created if missing and upgraded to head once per session."""
    from shared.db import migrate

    url = database_url_for()
    try:
        migrate.upgrade(url)
    except migrate.DatabaseUnavailableError as exc:
        _fail_without_postgres(exc)
    return url


def _fail_without_postgres(exc: Exception) -> NoReturn:
    pytest.fail(
        f"{exc}\nIntegration tests need PostgreSQL: start it (`landmarks dev up`) or point "
        "LANDMARKS_DATABASE_URL at a server.",
        pytrace=False,
    )


class ScratchDatabases:
    """Databases of their own (``landmarks_scratch_<hex>``) on the test server, all dropped after the test."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, *, create: bool = True) -> str:
        """The URL of a new database: empty, or (``create=False``) not there yet, for code that creates it."""
        from shared.db import migrate

        url = database_url_for(f"landmarks_scratch_{uuid.uuid4().hex[:12]}")
        self.urls.append(url)
        if create:
            try:
                migrate.ensure_database(url)
            except migrate.DatabaseUnavailableError as exc:
                _fail_without_postgres(exc)
        return url

    def drop_all(self) -> None:
        engine = create_engine(database_url_for("postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for url in self.urls:
                    name = conn.dialect.identifier_preparer.quote(make_url(url).database or "")
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            engine.dispose()


@pytest.fixture
def make_scratch_database() -> Iterator[ScratchDatabases]:
    """``make_scratch_database()`` -> URL of an empty database of its own, dropped after the test.

    For tests that migrate up and down or build a schema another way; everything else uses ``db_session``.
    """
    databases = ScratchDatabases()
    yield databases
    if databases.urls:
        databases.drop_all()


@pytest.fixture(scope="session")
def db_engine(pg_url: str) -> Iterator[Engine]:
    from shared.db.session import make_engine

    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_connection(db_engine: Engine) -> Iterator[Connection]:
    """One connection holding the test's outer transaction, rolled back at the end whatever happened."""
    with db_engine.connect() as connection:
        outer = connection.begin()
        try:
            yield connection
        finally:
            if outer.is_active:
                outer.rollback()


@pytest.fixture
def session_factory(db_connection: Connection) -> sessionmaker[Session]:
    """A sessionmaker like :func:`shared.db.session.make_session_factory`'s, joined to the test's transaction.

    For service functions that open their own ``session_scope(factory)``: their commits release savepoints,
    and everything is rolled back after the test. Sessions from it and ``db_session`` see each other's data.
    """
    return sessionmaker(bind=db_connection, expire_on_commit=False, join_transaction_mode="create_savepoint")


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A Session inside the test's transaction; ``commit()`` is allowed and undone after the test."""
    with session_factory() as session:
        yield session


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo>/../shared/data`` (real photos under licence: read them there, never copy them)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent: {SHARED_DATA} does not exist")
    return SHARED_DATA
