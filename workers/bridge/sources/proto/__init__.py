"""Generated protobuf/gRPC code for SeaweedFS's filer metadata stream (see ``filer.proto``, ``generate.py``)."""
