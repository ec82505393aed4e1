"""Alembic environment: where the URL comes from and how migrations run against PostgreSQL.

The URL is the Config's ``sqlalchemy.url`` when a caller set one (shared.db.migrate, tests), else the
settings object's ``LANDMARKS_DATABASE_URL``. Online runs take an advisory lock so concurrent migrators queue
instead of racing, set a lock timeout so a migration never holds live traffic up behind it for long, and
commit each migration on its own.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from shared.db.migrate import COMPARE_OPTIONS, LOCK_TIMEOUT, MIGRATION_LOCK_KEY
from shared.db.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None:  # the `alembic` command line; the CLI and tests keep their logging
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from shared.settings import get_settings

    return get_settings().database_url


def run_migrations_offline() -> None:
    """Emit SQL (``alembic upgrade head --sql``) for a DBA to review and run."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
        **COMPARE_OPTIONS,
    )
    with context.begin_transaction():
        context.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            # Session-level: the advisory lock and the timeout outlive this setup transaction, which must be
            # committed so that Alembic, not this autobegun transaction, owns each migration's transaction.
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
            connection.commit()
            try:
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    transaction_per_migration=True,
                    **COMPARE_OPTIONS,
                )
                # Read under the lock, so that callers (shared.db.migrate) report what this run really did.
                migration_context = context.get_context()
                config.attributes["revision_before"] = migration_context.get_current_revision()
                with context.begin_transaction():
                    context.run_migrations()
                config.attributes["revision_after"] = migration_context.get_current_revision()
            finally:
                connection.rollback()  # leave any failed transaction before unlocking
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
