"""Database URLs between SQLAlchemy's form (``postgresql+psycopg2://...``) and libpq's, without SQLAlchemy."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def libpq_url(database_url: str) -> str:
    """The libpq connection URI of a SQLAlchemy PostgreSQL URL: the ``+driver`` part of the scheme dropped."""
    parts = urlsplit(database_url)
    dialect = parts.scheme.split("+", 1)[0]
    if dialect not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {dialect}://...")
    return urlunsplit(parts._replace(scheme="postgresql"))
