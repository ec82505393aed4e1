"""`landmarks db upgrade|current|check|downgrade`: a thin shell over :mod:`shared.db.migrate`.

Alembic and SQLAlchemy are imported inside the commands: every other `landmarks` command would pay for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

app = typer.Typer(no_args_is_help=True)

T = TypeVar("T")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Target database (default: LANDMARKS_DATABASE_URL from the settings).",
        show_default=False,
    ),
]


def _url(database_url: str | None) -> str:
    if database_url:
        return database_url
    from shared.settings import get_settings

    return get_settings().database_url


def _run(action: Callable[[], T]) -> T:
    """Turn the errors an operator can act on into one line on stderr and exit status 1."""
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    from shared.db import migrate

    try:
        return action()
    except (migrate.DatabaseUnavailableError, CommandError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except DBAPIError as exc:  # e.g. the lock timeout: the migration was rolled back, nothing half-done
        typer.echo(f"error: {str(exc.orig).strip() or exc}", err=True)
        raise typer.Exit(1) from exc


def _name(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(database_url).database or "?"


def _rev(revision: str | None) -> str:
    return revision or "base (empty)"


@app.command()
def upgrade(
    revision: Annotated[str, typer.Option("--revision", "-r", help="Target revision.")] = "head",
    database_url: UrlOption = None,
) -> None:
    """Create the database if it is missing and migrate it up to REVISION (a no-op when already there)."""
    from shared.db import migrate

    url = _url(database_url)
    result = _run(lambda: migrate.upgrade(url, revision))
    if result.created_database:
        typer.echo(f"created database {_name(url)} on {migrate.redact(url)}")
    if result.changed:
        typer.echo(f"upgraded {_name(url)} from {_rev(result.before)} to {_rev(result.after)}")
    elif revision == "head":
        typer.echo(f"{_name(url)} already at head ({_rev(result.after)})")
    else:
        typer.echo(f"{_name(url)} already at {_rev(result.after)}")


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base (drops every table).")],
    database_url: UrlOption = None,
) -> None:
    """Migrate down to REVISION: for undoing a bad release; data in dropped tables is lost."""
    from shared.db import migrate

    url = _url(database_url)
    result = _run(lambda: migrate.downgrade(url, revision))
    if result.changed:
        typer.echo(f"downgraded {_name(url)} from {_rev(result.before)} to {_rev(result.after)}")
    else:
        typer.echo(f"{_name(url)} already at {_rev(result.after)}")


@app.command()
def current(database_url: UrlOption = None) -> None:
    """Show the database's revision and whether it is at head."""
    from shared.db import migrate

    url = _url(database_url)
    revision = _run(lambda: migrate.current_revision(url))
    head = migrate.head_revision()
    state = "head" if revision == head else f"behind head {head}"
    typer.echo(f"{_name(url)}: {_rev(revision)} ({state})")


@app.command()
def check(database_url: UrlOption = None) -> None:
    """Fail (exit 1) unless the database is at head and the models match it: `alembic check`, for CI."""
    from shared.db import migrate

    url = _url(database_url)
    result = _run(lambda: migrate.check(url))
    if result.current != result.head:
        typer.echo(
            f"error: {_name(url)} is at {_rev(result.current)}, not head {result.head}: "
            "run `landmarks db upgrade` first",
            err=True,
        )
    for diff in result.diffs:
        typer.echo(f"models and migrations differ: {diff}", err=True)
    if not result.ok:
        if result.diffs:
            typer.echo("write a migration: alembic revision --autogenerate --rev-id NNNN_slug -m '...'", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {_name(url)} at head ({result.head}); models and migrations agree")
