"""Event sources of the bridge: the SeaweedFS filer stream (gRPC client, generated
protobuf code) and MinIO-style S3 notification records, each normalised to ``shared.events.ObjectEvent``."""
