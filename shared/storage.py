"""Object storage through the ``minio`` client: thin, typed helpers the services share."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import S3Error

from shared.errors import ServiceUnavailable
from shared.events.record import user_metadata

MISSING_OBJECT_CODES = {"NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"}
# Answers of a server that is starting, stopping or overloaded (SeaweedFS says InternalError while it restarts):
# retried like a refused connection, never recorded as a failure of the photo.
TRANSIENT_S3_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted"}


class ObjectMissing(Exception):
    """The object an event named no longer exists (deleted after the event was sent)."""


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None


def make_minio(
    endpoint: str, access_key: str, secret_key: str, *, secure: bool = False, region: str | None = None
) -> Minio:
    """A client with short timeouts and no internal retries: our tasks retry with backoff themselves."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3.0, read=30.0),
        retries=urllib3.Retry(total=0, connect=0, read=0, redirect=2),
        maxsize=8,
    )
    return Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=http)


def make_presigner(public_url: str, access_key: str, secret_key: str, *, region: str) -> Minio:
    """A client that only signs URLs for ``public_url`` (``http(s)://host[:port]``), the storage's address as
    users' browsers see it. Signing is local: with the region given, minio never asks the server for it."""
    parts = urlsplit(public_url)
    return Minio(parts.netloc, access_key=access_key, secret_key=secret_key, secure=parts.scheme == "https",
                 region=region)  # fmt: skip


def _unavailable(client: Minio, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"S3 server at {client._base_url.host} is unavailable: {exc.__class__.__name__}: {exc}")


def _is_missing(exc: S3Error) -> bool:
    return exc.code in MISSING_OBJECT_CODES


def _is_transient(exc: S3Error) -> bool:
    status = getattr(exc.response, "status", None)
    return exc.code in TRANSIENT_S3_CODES or (isinstance(status, int) and status >= 500)


def ensure_buckets(client: Minio, names: list[str]) -> list[str]:
    """Create the buckets that do not exist yet; returns those created."""
    created = []
    try:
        for name in names:
            if not client.bucket_exists(name):
                client.make_bucket(name)
                created.append(name)
    except S3Error as exc:
        if _is_transient(exc):
            raise _unavailable(client, exc) from exc
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unavailable(client, exc) from exc
    return created


@contextmanager
def _object_errors(client: Minio, bucket: str, key: str) -> Iterator[None]:
    """A missing object becomes ObjectMissing (permanent); a connection failure or a 5xx answer becomes
    ServiceUnavailable (retried)."""
    try:
        yield
    except S3Error as exc:
        if _is_missing(exc):
            raise ObjectMissing(f"s3://{bucket}/{key} does not exist") from exc
        if _is_transient(exc):
            raise _unavailable(client, exc) from exc
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unavailable(client, exc) from exc


def stat_object(client: Minio, bucket: str, key: str) -> ObjectInfo:
    with _object_errors(client, bucket, key):
        st = client.stat_object(bucket, key)
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=st.size or 0,
        etag=(st.etag or "").strip('"'),
        content_type=st.content_type,
        metadata=user_metadata(st.metadata or {}),
        last_modified=st.last_modified,
    )


def read_object(client: Minio, bucket: str, key: str, *, max_bytes: int) -> bytes:
    """The object's bytes, inflated when stored with ``Content-Encoding: gzip`` or ``deflate``.

    Refuses, while reading, an object whose stored or inflated size is over ``max_bytes``: the body is taken as
    stored (the HTTP library's own decoding is off) and inflated here at most ``max_bytes + 1`` bytes deep.
    """
    with _object_errors(client, bucket, key):
        response = client.get_object(bucket, key)
    too_large = f"s3://{bucket}/{key} is larger than {max_bytes} bytes"
    try:
        inflater = _inflater(response.headers.get("Content-Encoding"))
        buf = io.BytesIO()
        stored = 0
        for chunk in response.stream(1 << 20, decode_content=False):
            stored += len(chunk)
            room = max_bytes - buf.tell()
            data = chunk if inflater is None else inflater.decompress(chunk, room + 1)
            if stored > max_bytes or len(data) > room:
                raise ValueError(too_large + (" once inflated" if stored <= max_bytes else ""))
            buf.write(data)
        if inflater is not None:
            buf.write(inflater.flush())  # unconsumed input was refused above: this is the last window only
            if buf.tell() > max_bytes:
                raise ValueError(too_large + " once inflated")
        return buf.getvalue()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unavailable(client, exc) from exc
    finally:
        response.close()
        response.release_conn()


def _inflater(encoding: str | None) -> zlib._Decompress | None:
    """A bounded inflater for gzip or deflate; None for identity, an unknown or a stacked coding (read as stored:
    the image decoder then refuses what it cannot read)."""
    coding = (encoding or "").strip().lower()
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if coding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib-wrapped, as HTTP's deflate is meant to be
    return None


def put_file(
    client: Minio,
    bucket: str,
    key: str,
    path: Path,
    *,
    metadata: Mapping[str, str] | None = None,
    content_type: str = "application/octet-stream",
) -> str:
    """Upload a local file; returns its eTag."""
    try:
        result = client.fput_object(bucket, key, str(path), content_type=content_type, metadata=dict(metadata or {}))
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unavailable(client, exc) from exc
    return (result.etag or "").strip('"')


def list_objects(
    client: Minio, bucket: str, prefix: str = "", *, start_after: str | None = None
) -> Iterator[ObjectInfo]:
    """Every object under ``prefix`` (recursive) in key order (UTF-8 bytes), after ``start_after`` if given;
    without user metadata (a stat per object would be slow)."""
    try:
        for obj in client.list_objects(bucket, prefix=prefix or None, recursive=True, start_after=start_after):
            if obj.is_dir:
                continue
            yield ObjectInfo(
                bucket=bucket,
                key=obj.object_name,
                size=obj.size or 0,
                etag=(obj.etag or "").strip('"'),
                last_modified=obj.last_modified,
            )
    except S3Error as exc:
        if _is_transient(exc):
            raise _unavailable(client, exc) from exc
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unavailable(client, exc) from exc


def object_exists(client: Minio, bucket: str, key: str) -> bool:
    """Whether the object is there now (a delete event is applied only once this says no)."""
    try:
        stat_object(client, bucket, key)
    except ObjectMissing:
        return False
    return True
