"""SeaweedFS filer metadata events -> object events, shaped as `weed mini` 4.48 sends them for S3 operations."""

from __future__ import annotations

import base64
import hashlib

import pytest

from shared.events import CREATED, REMOVED
from workers.bridge.sources.proto import filer_pb2
from workers.bridge.sources.seaweed import entry_etag, events_from_metadata, split_bucket_path

TS = 1_714_558_272_345_678_901


def _file(
    name: str, data: bytes = b"jpeg bytes", *, mime: str = "image/jpeg", meta=None, fid="3,01"
) -> filer_pb2.Entry:
    md5 = hashlib.md5(data).digest()
    entry = filer_pb2.Entry(
        name=name,
        attributes=filer_pb2.FuseAttributes(file_size=len(data), mime=mime, md5=md5, mtime=TS // 10**9),
        chunks=[filer_pb2.FileChunk(file_id=fid, size=len(data), e_tag=base64.b64encode(md5).decode())],
    )
    entry.extended["Seaweed-X-Amz-ETag"] = md5.hex().encode()
    entry.extended["Seaweed-X-Amz-Owner"] = b"admin"
    for key, value in (meta or {}).items():
        entry.extended[key] = value.encode()
    return entry


def _dir(name: str) -> filer_pb2.Entry:
    return filer_pb2.Entry(name=name, is_directory=True)


def _response(directory: str, old=None, new=None, new_parent: str | None = None) -> filer_pb2.SubscribeMetadataResponse:
    note = filer_pb2.EventNotification(delete_chunks=True)
    if old is not None:
        note.old_entry.CopyFrom(old)
    if new is not None:
        note.new_entry.CopyFrom(new)
        note.new_parent_path = directory if new_parent is None else new_parent
    return filer_pb2.SubscribeMetadataResponse(directory=directory, event_notification=note, ts_ns=TS)


def test_put_with_user_metadata_is_created() -> None:
    entry = _file("IMG 1%.jpg", meta={"X-Amz-Meta-User": "alice"})
    [event] = events_from_metadata(_response("/buckets/photos/users/al ice", new=entry))
    assert (event.event_name, event.bucket, event.key) == (CREATED, "photos", "users/al ice/IMG 1%.jpg")
    assert event.user_metadata == {"user": "alice"}  # weed's own Seaweed-* keys are not user metadata
    assert event.etag == hashlib.md5(b"jpeg bytes").hexdigest()
    assert event.size == len(b"jpeg bytes") and event.content_type == "image/jpeg"
    assert event.source == "seaweedfs:filer" and event.sequencer == f"{TS:016X}"
    assert event.to_record()["eventTime"] == "2024-05-01T10:11:12.345Z"


def test_directories_parts_and_internal_trees_are_dropped() -> None:
    part = _file("0001_0f1e.part", b"x" * 100)
    assert events_from_metadata(_response("/buckets/photos", new=_dir("users"))) == []
    assert events_from_metadata(_response("/buckets", new=_dir("photos"))) == []  # the bucket itself
    assert events_from_metadata(_response("/buckets/photos/.uploads", new=_dir("f764_56c1"))) == []
    assert events_from_metadata(_response("/buckets/photos/.uploads/f764_56c1", new=part)) == []
    assert events_from_metadata(_response("/buckets/photos/.uploads/f764_56c1", old=part)) == []
    assert events_from_metadata(_response("/buckets/.system/owners/admin", new=_file("photos"))) == []
    assert events_from_metadata(_response("/topics/.system/log", new=_file("2024-05-01-10-11"))) == []
    assert events_from_metadata(_response("/buckets", new=_file("loose.txt"))) == []  # not inside a bucket


def test_delete_is_removed_with_the_old_entry() -> None:
    old = _file("copy.jpg")
    [event] = events_from_metadata(_response("/buckets/photos", old=old))
    assert (event.event_name, event.bucket, event.key, event.size) == (
        REMOVED,
        "photos",
        "copy.jpg",
        len(b"jpeg bytes"),
    )


def test_overwrite_with_new_content_is_created() -> None:
    old = _file("a.jpg", b"old", fid="3,01")
    new = _file("a.jpg", b"new", fid="4,02")
    [event] = events_from_metadata(_response("/buckets/photos", old=old, new=new))
    assert event.event_name == CREATED and event.etag == hashlib.md5(b"new").hexdigest()


def test_same_bytes_uploaded_again_is_created() -> None:
    """Identical content but new chunks: a new PUT the user made, so ingest sees it (and dedupes by ETag)."""
    [event] = events_from_metadata(
        _response("/buckets/photos", old=_file("a.jpg", fid="3,01"), new=_file("a.jpg", fid="5,07"))
    )
    assert event.event_name == CREATED


def test_metadata_only_update_is_dropped() -> None:
    old = _file("copy.jpg", meta={"X-Amz-Meta-User": "alice"})
    new = _file("copy.jpg", meta={"X-Amz-Meta-User": "alice", "X-Amz-Tagging-a": "b"})
    assert events_from_metadata(_response("/buckets/photos", old=old, new=new)) == []


def test_rename_is_removed_old_plus_created_new() -> None:
    entry = _file("b.jpg")
    old = _file("a.jpg")
    removed, created = events_from_metadata(
        _response("/buckets/photos/in", old=old, new=entry, new_parent="/buckets/photos/out")
    )
    assert (removed.event_name, removed.key) == (REMOVED, "in/a.jpg")
    assert (created.event_name, created.key) == (CREATED, "out/b.jpg")


def test_rename_out_of_a_bucket_is_only_removed() -> None:
    [event] = events_from_metadata(
        _response("/buckets/photos", old=_file("a.jpg"), new=_file("a.jpg"), new_parent="/archive")
    )
    assert (event.event_name, event.key) == (REMOVED, "a.jpg")


def test_multipart_result_keeps_the_s3_etag_weed_stored() -> None:
    entry = _file("ü.bin", b"z" * 1000, mime="")
    entry.attributes.md5 = b""
    entry.extended["Seaweed-X-Amz-ETag"] = b"0512cff0afd7ab00341c7a1aed08bf29-3"
    [event] = events_from_metadata(_response("/buckets/photos/big", new=entry))
    assert event.key == "big/ü.bin" and event.etag == "0512cff0afd7ab00341c7a1aed08bf29-3"
    assert event.content_type is None


def test_etag_falls_back_to_md5_then_chunk_md5s() -> None:
    entry = _file("a.jpg", b"abc")
    del entry.extended["Seaweed-X-Amz-ETag"]
    assert entry_etag(entry) == hashlib.md5(b"abc").hexdigest()
    entry.attributes.md5 = b""
    assert entry_etag(entry) == hashlib.md5(b"abc").hexdigest()  # one chunk: its md5
    parts = [hashlib.md5(p).digest() for p in (b"p1", b"p2")]
    entry.ClearField("chunks")
    entry.chunks.extend(filer_pb2.FileChunk(e_tag=base64.b64encode(d).decode(), size=2) for d in parts)
    assert entry_etag(entry) == hashlib.md5(b"".join(parts)).hexdigest() + "-2"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/buckets/photos/a/b.jpg", ("photos", "a/b.jpg")),
        ("/buckets/photos/.uploadsX/b.jpg", ("photos", ".uploadsX/b.jpg")),
        ("/buckets/photos/.uploads/x/0001.part", None),
        ("/buckets/photos", None),
        ("/buckets/.system/x", None),
        ("/bucketsx/photos/a.jpg", None),
    ],
)
def test_split_bucket_path(path: str, expected: tuple[str, str] | None) -> None:
    assert split_bucket_path(path) == expected
