"""A command's view of a service that does not answer: one line naming it and its address, exit status 1, instead
of a traceback (PostgreSQL unreachable or without the schema, the S3 server down)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@contextmanager
def service_errors(database_url: str | None = None) -> Iterator[None]:
    """Turn the database's and the object store's connection errors into one line each (SQLAlchemy loads here,
    inside the command, not at CLI start); the database URL defaults to the settings' one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from shared.errors import ServiceUnavailable
    from shared.settings import get_settings

    url = make_url(database_url or get_settings().database_url).render_as_string(hide_password=True)
    try:
        yield
    except OperationalError as exc:
        raise fail(f"PostgreSQL at {url} is unreachable (`landmarks dev up` starts it): {exc.orig}") from exc
    except ProgrammingError as exc:
        raise fail(f"PostgreSQL at {url} has no landmarks schema: run `landmarks db upgrade`") from exc
    except ServiceUnavailable as exc:
        raise fail(str(exc)) from exc
