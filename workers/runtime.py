"""What CLI commands share: settings-built clients and sessions (only entry points read settings)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from minio import Minio
from sqlalchemy.orm import Session, sessionmaker

from shared.db.session import make_engine, make_session_factory, session_scope
from shared.settings import S3Settings, get_settings
from shared.storage import make_minio, make_presigner


@cache
def minio_client() -> Minio:
    s3 = get_settings().s3
    return make_minio(s3.endpoint, s3.access_key, s3.secret_key.get_secret_value(), secure=s3.secure, region=s3.region)


def presigner_for(s3: S3Settings) -> Minio | None:
    """The client that signs URLs for users' browsers: None when no public URL is set (the S3 client signs)."""
    if s3.public_url is None:
        return None
    return make_presigner(s3.public_url, s3.access_key, s3.secret_key.get_secret_value(), region=s3.region)


@cache
def presign_client() -> Minio:
    return presigner_for(get_settings().s3) or minio_client()


@cache
def session_factory() -> sessionmaker[Session]:
    return make_session_factory(make_engine(get_settings().database_url))


@contextmanager
def db_session() -> Iterator[Session]:
    with session_scope(session_factory()) as session:
        yield session
