"""SeaweedFS filer metadata events -> S3 notification records.

The filer streams every change of its namespace; S3 buckets live under ``/buckets/<bucket>/<key>``. Only
content changes of bucket objects become events: directories (S3 "prefixes" are directories in the filer),
multipart parts under ``<bucket>/.uploads/``, internal trees such as ``/buckets/.system`` and
metadata-only updates (tags, ACLs) are dropped.

Decisions (what the filer sends for each S3 operation was checked against ``weed mini`` 4.48):
new entry only = created; old entry only = removed; both at the same path with other content = created
(overwrite); both at different paths = rename = removed old + created new.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from datetime import UTC, datetime

from shared.events.record import CREATED, REMOVED, ObjectEvent, user_metadata
from workers.bridge.sources.proto import filer_pb2

BUCKETS_DIR = "/buckets"
SOURCE = "seaweedfs:filer"
MULTIPART_DIR = ".uploads"
ETAG_KEY = "Seaweed-X-Amz-ETag"  # the ETag S3 clients see (multipart: md5-of-md5s-N); set by weed's S3 API


def split_bucket_path(path: str, buckets_dir: str = BUCKETS_DIR) -> tuple[str, str] | None:
    """``/buckets/photos/a/b.jpg`` -> ``("photos", "a/b.jpg")``; None outside real buckets and for parts."""
    prefix = buckets_dir.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    bucket, _, key = path[len(prefix) :].partition("/")
    if not bucket or not key or bucket.startswith("."):
        return None
    if key == MULTIPART_DIR or key.startswith(MULTIPART_DIR + "/"):
        return None
    return bucket, key


def entry_etag(entry: filer_pb2.Entry) -> str:
    """The S3 ETag: weed's stored one, else the md5 hex, else derived from chunk md5s as weed does."""
    stored = entry.extended.get(ETAG_KEY)
    if stored:
        return stored.decode("ascii", "replace").strip('"')
    if entry.attributes.md5:
        return entry.attributes.md5.hex()
    if entry.content:
        return hashlib.md5(entry.content, usedforsecurity=False).hexdigest()
    digests = [base64.b64decode(chunk.e_tag) for chunk in entry.chunks if chunk.e_tag]
    if len(digests) == 1:
        return digests[0].hex()
    if digests:
        return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"
    return ""


def entry_size(entry: filer_pb2.Entry) -> int:
    chunk_end = max((chunk.offset + chunk.size for chunk in entry.chunks), default=0)
    return max(entry.attributes.file_size, len(entry.content), chunk_end)


def _content_changed(old: filer_pb2.Entry, new: filer_pb2.Entry) -> bool:
    return (
        entry_etag(old) != entry_etag(new)
        or entry_size(old) != entry_size(new)
        or [c.file_id for c in old.chunks] != [c.file_id for c in new.chunks]
        or old.content != new.content
    )


def _event(name: str, path: str, entry: filer_pb2.Entry, ts_ns: int, buckets_dir: str) -> ObjectEvent | None:
    if entry.is_directory:
        return None
    location = split_bucket_path(path, buckets_dir)
    if location is None:
        return None
    bucket, key = location
    headers = {k: v.decode("utf-8", "replace") for k, v in entry.extended.items()}
    return ObjectEvent(
        event_name=name,
        bucket=bucket,
        key=key,
        size=entry_size(entry),
        etag=entry_etag(entry),
        content_type=entry.attributes.mime or None,
        user_metadata=user_metadata(headers),
        event_time=datetime.fromtimestamp(ts_ns / 1e9, UTC),
        source=SOURCE,
        sequencer=f"{ts_ns:016X}",
    )


def events_from_metadata(
    response: filer_pb2.SubscribeMetadataResponse, buckets_dir: str = BUCKETS_DIR
) -> list[ObjectEvent]:
    """One filer metadata event -> zero, one (create, overwrite, delete) or two (rename) object events."""
    note = response.event_notification
    old = note.old_entry if note.HasField("old_entry") and note.old_entry.name else None
    new = note.new_entry if note.HasField("new_entry") and note.new_entry.name else None
    ts = response.ts_ns
    old_path = posixpath.join(response.directory, old.name) if old is not None else None
    new_path = posixpath.join(note.new_parent_path or response.directory, new.name) if new is not None else None

    candidates: list[ObjectEvent | None] = []
    if old is not None and new is not None and old_path == new_path:
        if _content_changed(old, new):
            candidates.append(_event(CREATED, new_path, new, ts, buckets_dir))
    else:
        if old is not None and old_path is not None:
            candidates.append(_event(REMOVED, old_path, old, ts, buckets_dir))
        if new is not None and new_path is not None:
            candidates.append(_event(CREATED, new_path, new, ts, buckets_dir))
    return [event for event in candidates if event is not None]
