"""The one shape every object-storage event takes inside the project: the S3/MinIO notification record.

Each source (MinIO-style webhooks, the SeaweedFS filer stream) is normalised to :class:`ObjectEvent` at the
edge, so the ingest task sees one format whatever the storage is. Keys are always URL-decoded here; only the
webhook parser decodes (once), because only MinIO/S3 notifications carry encoded keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CREATED = "s3:ObjectCreated:Put"
REMOVED = "s3:ObjectRemoved:Delete"
EVENT_VERSION = "2.0"
META_PREFIX = "x-amz-meta-"


def metadata_name(header: str) -> str | None:
    """``X-Amz-Meta-User`` -> ``user``; anything that is not user metadata -> None."""
    name = header.strip().lower()
    if not name.startswith(META_PREFIX) or len(name) == len(META_PREFIX):
        return None
    return name[len(META_PREFIX) :]


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """Keep only S3 user metadata, named without the ``x-amz-meta-`` prefix, in lower case.

    Sources spell the names differently (``X-Amz-Meta-User``, ``x-amz-meta-user``); consumers read ``user``.
    """
    out: dict[str, str] = {}
    for header, value in headers.items():
        name = metadata_name(header)
        if name is not None:
            out[name] = value
    return out


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``, as S3 and MinIO write ``eventTime``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """An object was created (or overwritten) or removed; ``key`` is decoded, ``user_metadata`` unprefixed."""

    event_name: str
    bucket: str
    key: str
    size: int
    etag: str
    content_type: str | None
    user_metadata: dict[str, str]
    event_time: datetime
    source: str
    sequencer: str | None = field(default=None)

    @property
    def is_created(self) -> bool:
        return self.event_name.startswith("s3:ObjectCreated:")

    @property
    def is_removed(self) -> bool:
        return self.event_name.startswith("s3:ObjectRemoved:")

    def to_record(self) -> dict[str, Any]:
        """The S3 notification record (JSON-serialisable): what is sent to ``ingest.object_event``."""
        return {
            "eventVersion": EVENT_VERSION,
            "eventSource": self.source,
            "eventTime": format_time(self.event_time),
            "eventName": self.event_name,
            "s3": {
                "bucket": {"name": self.bucket},
                "object": {
                    "key": self.key,
                    "size": self.size,
                    "eTag": self.etag,
                    "contentType": self.content_type,
                    "userMetadata": dict(self.user_metadata),
                    "sequencer": self.sequencer,
                },
            },
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ObjectEvent:
        """Read back a record made by :meth:`to_record` (its key is already decoded: no decoding here)."""
        s3 = record["s3"]
        obj = s3["object"]
        return cls(
            event_name=record["eventName"],
            bucket=s3["bucket"]["name"],
            key=obj["key"],
            size=int(obj.get("size") or 0),
            etag=obj.get("eTag") or "",
            content_type=obj.get("contentType"),
            user_metadata=dict(obj.get("userMetadata") or {}),
            event_time=parse_time(record["eventTime"]),
            source=record.get("eventSource", ""),
            sequencer=obj.get("sequencer"),
        )
