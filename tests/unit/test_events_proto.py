"""The committed gRPC code is what ``filer.proto`` generates, and speaks SeaweedFS's wire names."""

from __future__ import annotations

from pathlib import Path

from workers.bridge.sources.proto import filer_pb2, generate

GENERATED = ["filer_pb2.py", "filer_pb2.pyi", "filer_pb2_grpc.py"]


def test_committed_code_matches_the_proto(tmp_path: Path) -> None:
    assert generate.main(tmp_path) == 0
    here = Path(generate.__file__).parent
    out = tmp_path / here.relative_to(generate.ROOT)
    stale = [name for name in GENERATED if (out / name).read_text() != (here / name).read_text()]
    assert stale == [], f"regenerate with `.venv/bin/python -m workers.bridge.sources.proto.generate`: {stale}"


def test_service_and_field_numbers_are_seaweedfs_ones() -> None:
    """The method path and field numbers must equal weed/pb/filer.proto's, or the filer sees garbage."""
    service = filer_pb2.DESCRIPTOR.services_by_name["SeaweedFiler"]
    assert service.full_name == "filer_pb.SeaweedFiler"
    assert "SubscribeMetadata" in service.methods_by_name
    numbers = {
        "SubscribeMetadataRequest": {"client_name": 1, "path_prefix": 2, "since_ns": 3, "client_id": 7},
        "SubscribeMetadataResponse": {"directory": 1, "event_notification": 2, "ts_ns": 3},
        "EventNotification": {"old_entry": 1, "new_entry": 2, "new_parent_path": 4},
        "Entry": {"name": 1, "is_directory": 2, "chunks": 3, "attributes": 4, "extended": 5},
        "FuseAttributes": {"file_size": 1, "mtime": 2, "mime": 7, "md5": 14},
    }
    for message, fields in numbers.items():
        descriptor = filer_pb2.DESCRIPTOR.message_types_by_name[message]
        assert {name: descriptor.fields_by_name[name].number for name in fields} == fields, message
