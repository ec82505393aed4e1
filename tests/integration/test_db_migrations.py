"""Migrations against real PostgreSQL: up, down, idempotent, concurrent, and equal to the models."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from shared.db import migrate
from shared.db.models import Base
from workers.cli.main import app

if TYPE_CHECKING:  # the fixture's type; conftest modules are not importable by name reliably
    from tests.conftest import ScratchDatabases

pytestmark = pytest.mark.integration

UNREACHABLE = "postgresql+psycopg2://postgres:s3cret-pw@127.0.0.1:1/landmarks"

# Everything PostgreSQL knows about a schema that matters to the application, rendered by the server itself.
SCHEMA_QUERY = """
SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'column', table_name, column_name,
       concat_ws(' ', data_type, character_maximum_length, is_nullable, column_default)
  FROM information_schema.columns WHERE table_schema = 'public'
"""


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _schema(url: str) -> set[tuple[str, ...]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = {tuple(row) for row in conn.execute(text(SCHEMA_QUERY))}
    finally:
        engine.dispose()
    return {row for row in rows if row[1] != "alembic_version"}


def _execute(url: str, sql: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def test_upgrade_on_an_empty_database_creates_every_table(make_scratch_database: ScratchDatabases) -> None:
    url = make_scratch_database()

    result = migrate.upgrade(url)

    assert (result.before, result.after) == (None, migrate.head_revision())
    assert result.changed
    assert _tables(url) == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrade_creates_a_missing_database(make_scratch_database: ScratchDatabases) -> None:
    url = make_scratch_database(create=False)

    result = migrate.upgrade(url)

    assert result.created_database
    assert migrate.current_revision(url) == migrate.head_revision()


def test_second_upgrade_is_a_noop(make_scratch_database: ScratchDatabases) -> None:
    url = make_scratch_database()
    migrate.upgrade(url)
    schema = _schema(url)

    again = migrate.upgrade(url)

    assert not again.changed
    assert not again.created_database
    assert again.after == migrate.head_revision()
    assert _schema(url) == schema


def test_downgrade_to_base_and_upgrade_again(make_scratch_database: ScratchDatabases) -> None:
    url = make_scratch_database()
    migrate.upgrade(url)
    schema = _schema(url)

    down = migrate.downgrade(url, "base")

    assert (down.before, down.after) == (migrate.head_revision(), None)
    assert _tables(url) == {"alembic_version"}
    migrate.upgrade(url)
    assert _schema(url) == schema


def test_migrations_build_exactly_the_schema_of_the_models(make_scratch_database: ScratchDatabases) -> None:
    """Stricter than `alembic check`: CHECK constraints, ON DELETE rules and constraint names agree too."""
    from_models, from_migrations = make_scratch_database(), make_scratch_database()
    engine = create_engine(from_models, poolclass=NullPool)
    Base.metadata.create_all(engine)
    engine.dispose()
    migrate.upgrade(from_migrations)

    models, migrations = _schema(from_models), _schema(from_migrations)

    assert sorted(models - migrations) == []
    assert sorted(migrations - models) == []
    assert {"ck_photos_photo_status", "ix_album_photos_photo_id"} <= {row[2] for row in migrations}


def test_check_passes_on_the_test_database(pg_url: str) -> None:
    result = migrate.check(pg_url)

    assert result.diffs == []
    assert result.current == result.head
    assert result.ok


def test_check_reports_a_schema_that_drifted_from_the_models(make_scratch_database: ScratchDatabases) -> None:
    url = make_scratch_database()
    migrate.upgrade(url)
    _execute(url, "ALTER TABLE photos DROP COLUMN etag")

    result = migrate.check(url)

    assert not result.ok
    assert any(diff[0] == "add_column" and diff[3].name == "etag" for diff in result.diffs)


def test_check_fails_on_a_database_behind_head(make_scratch_database: ScratchDatabases) -> None:
    result = migrate.check(make_scratch_database())

    assert result.current is None
    assert result.diffs == []
    assert not result.ok


@pytest.mark.slow
def test_concurrent_upgrades_queue_on_the_advisory_lock(make_scratch_database: ScratchDatabases) -> None:
    """Several workers starting at once on a fresh server: one creates and migrates, the others wait."""
    url = make_scratch_database(create=False)
    script = "import sys; from shared.db import migrate; r = migrate.upgrade(sys.argv[1]); print(r.changed, r.after)"

    procs = [subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [proc.communicate(timeout=120)[0].split() for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0, 0]
    assert [after for _, after in outputs] == [migrate.head_revision()] * 3
    assert [changed for changed, _ in outputs].count("True") == 1


@pytest.mark.slow
def test_a_migration_that_waits_for_a_lock_gives_up_and_rolls_back(
    make_scratch_database: ScratchDatabases,
) -> None:
    url = make_scratch_database()
    migrate.upgrade(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as reader:
            # Every step ends by updating alembic_version, which SHARE mode blocks: the first (newest) step times
            # out and rolls back its own DDL, so nothing is undone. Held until the rollback below.
            reader.execute(text("LOCK TABLE alembic_version IN SHARE MODE"))
            with pytest.raises(OperationalError, match="lock timeout"):
                migrate.downgrade(url, "base")
            reader.rollback()
    finally:
        engine.dispose()

    assert migrate.current_revision(url) == migrate.head_revision()
    assert _tables(url) == set(Base.metadata.tables) | {"alembic_version"}


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(migrate.DatabaseUnavailableError) as error:
        migrate.upgrade(UNREACHABLE)

    message = str(error.value)
    assert "PostgreSQL" in message
    assert "127.0.0.1:1/landmarks" in message
    assert "s3cret-pw" not in message


def test_cli_upgrade_current_check(make_scratch_database: ScratchDatabases) -> None:
    url = make_scratch_database(create=False)
    runner = CliRunner()
    head = migrate.head_revision()

    first = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    second = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    current = runner.invoke(app, ["db", "current", "--database-url", url])
    check = runner.invoke(app, ["db", "check", "--database-url", url])
    down = runner.invoke(app, ["db", "downgrade", "base", "--database-url", url])
    behind = runner.invoke(app, ["db", "check", "--database-url", url])

    assert first.exit_code == 0, first.output
    assert "created database" in first.output
    assert f"to {head}" in first.output
    assert second.exit_code == 0
    assert "already at head" in second.output
    assert f"{head} (head)" in current.output
    assert check.exit_code == 0
    assert "models and migrations agree" in check.output
    assert down.exit_code == 0
    assert behind.exit_code == 1
    assert "db upgrade" in behind.output


def test_cli_names_an_unreachable_server() -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "--database-url", UNREACHABLE])

    assert result.exit_code == 1
    assert "cannot connect to PostgreSQL at postgresql+psycopg2://postgres:***@127.0.0.1:1" in result.output
    assert "s3cret-pw" not in result.output
