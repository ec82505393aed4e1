"""S3-style bucket notifications (MinIO webhook target; RustFS and Ceph RGW send the same records).

MinIO URL-encodes object keys in its records (``+`` for a space, ``%XX``), as AWS does: they are decoded here,
once, with :func:`urllib.parse.unquote_plus`. Event names are reduced to the two the project acts on;
access events and metadata-only changes (tags, retention, legal hold) are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from shared.events.record import CREATED, REMOVED, ObjectEvent, parse_time, user_metadata

# Suffix after "ObjectCreated:" / "ObjectRemoved:" etc. (with or without the "s3:" prefix Ceph omits).
_CREATED_KINDS = {"Put", "Post", "Copy", "CompleteMultipartUpload"}
_REMOVED_PREFIXES = ("ObjectRemoved:", "LifecycleExpiration:", "ObjectLifecycle:Expiration:")
_REMOVED_EXCLUDED = {"ObjectRemoved:NoOP"}


class InvalidNotification(ValueError):
    """The payload is not an S3 notification (answer 400: retrying will not help)."""


def canonical_event_name(name: str) -> str | None:
    """``s3:ObjectCreated:CompleteMultipartUpload`` -> ``s3:ObjectCreated:Put``; uninteresting -> None."""
    bare = name.removeprefix("s3:")
    kind, _, detail = bare.partition(":")
    if kind == "ObjectCreated":
        return CREATED if detail in _CREATED_KINDS else None
    if bare in _REMOVED_EXCLUDED:
        return None
    if bare.startswith(_REMOVED_PREFIXES):
        return REMOVED
    return None


def decode_key(key: str) -> str:
    """Decode a key as S3/MinIO notifications encode it: ``al+ice/IMG%201.jpg`` -> ``al ice/IMG 1.jpg``."""
    return unquote_plus(key)


def _etag(value: Any) -> str:
    return str(value or "").strip('"')


def event_from_s3_record(record: Mapping[str, Any]) -> ObjectEvent | None:
    """One raw S3 record -> :class:`ObjectEvent`, or None when the project does not act on it."""
    try:
        name = record["eventName"]
        s3 = record["s3"]
        bucket = s3["bucket"]["name"]
        obj = s3["object"]
        raw_key = obj["key"]
    except (KeyError, TypeError) as exc:
        raise InvalidNotification(f"not an S3 notification record: missing {exc}") from exc
    if not isinstance(name, str) or not isinstance(bucket, str) or not isinstance(raw_key, str):
        raise InvalidNotification("eventName, bucket name and object key must be strings")
    event_name = canonical_event_name(name)
    if event_name is None:
        return None
    try:
        meta = {str(k): str(v) for k, v in (obj.get("userMetadata") or {}).items()}
        size = int(obj.get("size") or 0)
        event_time = parse_time(record["eventTime"]) if record.get("eventTime") else datetime.now(UTC)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidNotification(f"malformed S3 notification record: {exc}") from exc
    content_type = obj.get("contentType") or _header(meta, "content-type")
    sequencer = obj.get("sequencer")
    return ObjectEvent(
        event_name=event_name,
        bucket=bucket,
        key=decode_key(raw_key),
        size=size,
        etag=_etag(obj.get("eTag")),
        content_type=str(content_type) if content_type else None,
        user_metadata=user_metadata(meta),
        event_time=event_time,
        source=str(record.get("eventSource") or "s3"),
        sequencer=str(sequencer) if sequencer is not None else None,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def events_from_notification(payload: Any) -> list[ObjectEvent]:
    """A webhook body (``{"EventName", "Key", "Records": [...]}``) -> the events to act on.

    A body without ``Records`` is MinIO's connectivity test: no events, not an error.
    """
    if not isinstance(payload, Mapping):
        raise InvalidNotification("the notification body must be a JSON object")
    records = payload.get("Records")
    if records is None:
        return []
    if not isinstance(records, list):
        raise InvalidNotification("Records must be a list")
    events = []
    for record in records:
        if not isinstance(record, Mapping):
            raise InvalidNotification("each record must be a JSON object")
        event = event_from_s3_record(record)
        if event is not None:
            events.append(event)
    return events
