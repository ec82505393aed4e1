"""MinIO/S3 bucket notifications -> ObjectEvent: event names, decoded keys, metadata, the record round trip."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from shared.events import CREATED, REMOVED, ObjectEvent
from workers.bridge.sources.s3 import (
    InvalidNotification,
    canonical_event_name,
    decode_key,
    events_from_notification,
)

# As MinIO's webhook target posts it (docs: "Publish MinIO events via Webhook"): the key URL-encoded.
MINIO_PUT = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "photos/users/al%20ice/IMG+1.jpg",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2024-05-01T10:11:12.345Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "landmarks"},
            "requestParameters": {"principalId": "landmarks", "region": "", "sourceIPAddress": "10.0.0.5"},
            "responseElements": {
                "x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
                "x-amz-request-id": "17C5A1D2E5B2F4B1",
                "x-minio-deployment-id": "0b6a1c4e-0000-4000-8000-000000000000",
                "x-minio-origin-endpoint": "http://10.0.0.2:9000",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {
                    "name": "photos",
                    "ownerIdentity": {"principalId": "landmarks"},
                    "arn": "arn:aws:s3:::photos",
                },
                "object": {
                    "key": "users%2Fal+ice%2FIMG+1.jpg",
                    "size": 248682,
                    "eTag": "f1671feacb8bbf7b0397c6e9364e8c92",
                    "contentType": "image/jpeg",
                    "userMetadata": {"X-Amz-Meta-User": "alice", "content-type": "image/jpeg"},
                    "versionId": "1",
                    "sequencer": "17C5A1D2E6A1C3D4",
                },
            },
            "source": {"host": "10.0.0.5", "port": "", "userAgent": "MinIO (linux; amd64) minio-py/7.2.20"},
        }
    ],
}


def _with(name: str, key: str) -> dict:
    payload = copy.deepcopy(MINIO_PUT)
    payload["Records"][0]["eventName"] = name
    payload["Records"][0]["s3"]["object"]["key"] = key
    return payload


def test_minio_put_is_normalised_to_the_record_with_a_decoded_key() -> None:
    [event] = events_from_notification(MINIO_PUT)
    assert event.is_created and not event.is_removed
    assert event.key == "users/al ice/IMG 1.jpg"
    assert event.bucket == "photos"
    record = event.to_record()
    assert record == {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "eventTime": "2024-05-01T10:11:12.345Z",
        "eventName": CREATED,
        "s3": {
            "bucket": {"name": "photos"},
            "object": {
                "key": "users/al ice/IMG 1.jpg",
                "size": 248682,
                "eTag": "f1671feacb8bbf7b0397c6e9364e8c92",
                "contentType": "image/jpeg",
                "userMetadata": {"user": "alice"},
                "sequencer": "17C5A1D2E6A1C3D4",
            },
        },
    }
    assert json.loads(json.dumps(record)) == record  # what Celery's JSON serializer sends


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("al+ice/IMG%201.jpg", "al ice/IMG 1.jpg"),
        ("caf%C3%A9/%E6%9D%B1%E4%BA%AC.jpg", "café/東京.jpg"),
        ("100%25/a%2Bb.jpg", "100%/a+b.jpg"),  # a literal % and + survive: decoded exactly once
        ("plain/key.jpg", "plain/key.jpg"),
    ],
)
def test_keys_are_decoded_once(encoded: str, decoded: str) -> None:
    assert decode_key(encoded) == decoded
    [event] = events_from_notification(_with("s3:ObjectCreated:Put", encoded))
    assert event.key == decoded
    assert ObjectEvent.from_record(event.to_record()).key == decoded  # the record is not decoded again


def test_record_round_trip() -> None:
    event = ObjectEvent(
        event_name=REMOVED,
        bucket="photos",
        key="100%/a+b.jpg",
        size=0,
        etag="",
        content_type=None,
        user_metadata={},
        event_time=datetime(2024, 5, 1, 10, 11, 12, 345000, tzinfo=UTC),
        source="minio:s3",
    )
    assert ObjectEvent.from_record(event.to_record()) == event
    assert event.is_removed and not event.is_created


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("s3:ObjectCreated:Put", CREATED),
        ("s3:ObjectCreated:Post", CREATED),
        ("s3:ObjectCreated:Copy", CREATED),
        ("s3:ObjectCreated:CompleteMultipartUpload", CREATED),
        ("ObjectCreated:Put", CREATED),  # Ceph RGW without the "s3:" prefix
        ("s3:ObjectRemoved:Delete", REMOVED),
        ("s3:ObjectRemoved:DeleteMarkerCreated", REMOVED),
        ("s3:LifecycleExpiration:Delete", REMOVED),
        ("s3:ObjectRemoved:NoOP", None),
        ("s3:ObjectCreated:PutTagging", None),
        ("s3:ObjectCreated:PutRetention", None),
        ("s3:ObjectAccessed:Get", None),
        ("s3:BucketCreated", None),
    ],
)
def test_event_names_reduce_to_created_or_removed(name: str, expected: str | None) -> None:
    assert canonical_event_name(name) == expected


def test_uninteresting_records_are_dropped_and_delete_kept() -> None:
    payload = copy.deepcopy(MINIO_PUT)
    accessed = copy.deepcopy(payload["Records"][0])
    accessed["eventName"] = "s3:ObjectAccessed:Get"
    removed = copy.deepcopy(payload["Records"][0])
    removed["eventName"] = "s3:ObjectRemoved:Delete"
    del removed["s3"]["object"]["size"], removed["s3"]["object"]["eTag"]
    payload["Records"] = [accessed, removed]
    [event] = events_from_notification(payload)
    assert event.event_name == REMOVED and event.size == 0 and event.etag == ""


def test_test_notification_without_records_has_no_events() -> None:
    assert events_from_notification({"EventName": "", "Key": ""}) == []


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"Records": {"not": "a list"}},
        {"Records": ["not an object"]},
        {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {}}}]},
        {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": 3}}}]},
        _with("s3:ObjectCreated:Put", "k") | {"Records": [{**MINIO_PUT["Records"][0], "eventTime": "yesterday"}]},
    ],
)
def test_malformed_notifications_are_rejected(payload: object) -> None:
    with pytest.raises(InvalidNotification):
        events_from_notification(payload)
