"""What CLI commands share: settings-built clients and sessions (only entry points read settings).

Every client library loads inside the function that makes its client, so a command pays only for what it uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from shared.settings import get_settings

if TYPE_CHECKING:
    from minio import Minio
    from sqlalchemy.orm import Session, sessionmaker

    from shared.ops.status import Rows
    from shared.settings import S3Settings


@cache
def minio_client() -> Minio:
    """The S3 client; MinIO's package (half a second to import, with its admin client's crypto) loads here, so the
    commands that only read the database (`albums`, `status`, `model list`) do not pay for it."""
    from shared.storage import make_minio

    s3 = get_settings().s3
    return make_minio(s3.endpoint, s3.access_key, s3.secret_key.get_secret_value(), secure=s3.secure, region=s3.region)


def presigner_for(s3: S3Settings) -> Minio | None:
    """The client that signs URLs for users' browsers: None when no public URL is set (the S3 client signs)."""
    from shared.storage import make_presigner

    if s3.public_url is None:
        return None
    return make_presigner(s3.public_url, s3.access_key, s3.secret_key.get_secret_value(), region=s3.region)


@cache
def presign_client() -> Minio:
    return presigner_for(get_settings().s3) or minio_client()


@cache
def session_factory() -> sessionmaker[Session]:
    from shared.db.session import make_engine, make_session_factory

    return make_session_factory(make_engine(get_settings().database_url))


@contextmanager
def db_session() -> Iterator[Session]:
    from shared.db.session import session_scope

    with session_scope(session_factory()) as session:
        yield session


@contextmanager
def db_rows(connect_timeout_s: int = 5) -> Iterator[Rows]:
    """One read-only transaction on a bare psycopg2 connection, for the plain-SQL reads of `landmarks status`
    (:mod:`shared.ops.status`): no SQLAlchemy engine or models to import (issue 21)."""
    import psycopg2

    from shared.db.urls import libpq_url
    from shared.ops.status import cursor_rows

    connection = psycopg2.connect(libpq_url(get_settings().database_url), connect_timeout=connect_timeout_s)
    try:
        connection.set_session(readonly=True)
        yield cursor_rows(connection)
    finally:
        connection.close()  # nothing to commit: closing rolls the read-only transaction back
