"""Schema migrations as plain functions of a database URL: what `landmarks db ...` and the tests call.

Alembic does the work (``migrations/``); this module adds what an operator needs around it: create the
database when it is missing, report before/after revisions, and turn "PostgreSQL is down" into one clear error
that names the server without the password.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from shared.db.models import Base

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"

#: Expression indexes (``key COLLATE "C"``): Alembic reflects them without the expression and would report them
#: changed on every run, so the comparison leaves them out (the migration test compares them itself).
EXPRESSION_INDEXES = frozenset({"ix_photos_bucket_key_c"})


def _include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


#: How models are compared with the database; env.py uses the same options, so `landmarks db check`
#: and `alembic check` agree.
COMPARE_OPTIONS: dict[str, Any] = {
    "compare_type": True,
    "compare_server_default": True,
    "include_object": _include_object,
}

#: Session-level advisory lock key that serialises concurrent migrators (several workers starting at once).
MIGRATION_LOCK_KEY = 0x6C616E646D61726B  # "landmark"

#: How long a migration waits for a table lock before giving up, rather than queueing live traffic behind it.
LOCK_TIMEOUT = "4s"

# Another process created the database first: duplicate_database, or unique_violation on pg_database when
# both CREATE DATABASE statements ran at the same moment.
_LOST_CREATION_RACE = {"42P04", "23505"}


class DatabaseUnavailableError(RuntimeError):
    """PostgreSQL cannot be reached (or refuses us); the message names the server, never the password."""


@dataclass(frozen=True)
class MigrationResult:
    before: str | None
    after: str | None
    created_database: bool = False

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class CheckResult:
    current: str | None
    head: str | None
    diffs: list[Any]

    @property
    def ok(self) -> bool:
        return self.current == self.head and not self.diffs


def redact(database_url: str) -> str:
    """The URL as it may appear in logs and errors: password replaced by ``***``."""
    return make_url(database_url).render_as_string(hide_password=True)


def alembic_config(database_url: str) -> Config:
    """An Alembic Config aimed at ``database_url`` (no alembic.ini: the caller's logging stays untouched)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolates '%', which URL-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision in ``migrations/versions``."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


@contextmanager
def connect(database_url: str) -> Iterator[Connection]:
    """A short-lived connection whose connection errors become :class:`DatabaseUnavailableError`."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        try:
            conn = engine.connect()
        except OperationalError as exc:
            raise DatabaseUnavailableError(_unavailable(database_url, exc)) from exc
        with conn:
            yield conn
    finally:
        engine.dispose()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None for a database Alembic has never touched."""
    with connect(database_url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_database(database_url: str) -> bool:
    """Create the database named in the URL when it does not exist; True when it was created now.

    Connects to the ``postgres`` maintenance database in autocommit mode because CREATE DATABASE cannot run
    inside a transaction. Losing a creation race to another process (several workers starting on a fresh
    server) counts as "exists".
    """
    url = make_url(database_url)
    try:
        with connect(database_url):
            return False
    except DatabaseUnavailableError:
        maintenance = create_engine(url.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with maintenance.connect() as conn:
                if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}):
                    name = conn.dialect.identifier_preparer.quote(url.database or "")
                    conn.exec_driver_sql(f"CREATE DATABASE {name}")
                    return True
        except OperationalError as exc:
            raise DatabaseUnavailableError(_unavailable(database_url, exc)) from exc
        except DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) in _LOST_CREATION_RACE:
                return False
            raise
        finally:
            maintenance.dispose()
    # It exists: another process created it since our first try, or the first failure was something else
    # (permissions), which a second try raises.
    with connect(database_url):
        return False


def upgrade(database_url: str, revision: str = "head", *, create_database: bool = True) -> MigrationResult:
    """Migrate up to ``revision``, creating the database first if asked; a second run changes nothing."""
    created = ensure_database(database_url) if create_database else False
    return _migrate(command.upgrade, database_url, revision, created)


def downgrade(database_url: str, revision: str) -> MigrationResult:
    """Migrate down to ``revision`` (``base`` drops every table): for operators undoing a bad release."""
    return _migrate(command.downgrade, database_url, revision, False)


def _migrate(step: Callable[[Config, str], None], database_url: str, revision: str, created: bool) -> MigrationResult:
    before = current_revision(database_url)  # also turns "server down" into DatabaseUnavailableError
    config = alembic_config(database_url)
    step(config, revision)
    # env.py records the revisions it saw while holding the migration lock: exact under concurrent runs.
    attributes = config.attributes
    after = attributes["revision_after"] if "revision_after" in attributes else current_revision(database_url)
    return MigrationResult(before=attributes.get("revision_before", before), after=after, created_database=created)


def schema_diffs(database_url: str) -> list[Any]:
    """Alembic's differences between the models and the database (empty when they agree)."""
    with connect(database_url) as conn:
        context = MigrationContext.configure(conn, opts=COMPARE_OPTIONS)
        return list(compare_metadata(context, Base.metadata))


def check(database_url: str) -> CheckResult:
    """Is the database at head, and do the models match it? What `alembic check` asks, for CI.

    The models are compared only with a database at head: anything else would list every pending migration.
    """
    current, head = current_revision(database_url), head_revision()
    diffs = schema_diffs(database_url) if current == head else []
    return CheckResult(current=current, head=head, diffs=diffs)


def _unavailable(database_url: str, exc: OperationalError) -> str:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    return f"cannot connect to PostgreSQL at {redact(database_url)}: {reason}"
