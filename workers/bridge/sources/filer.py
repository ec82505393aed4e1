"""Client of the SeaweedFS filer's metadata stream (gRPC ``SeaweedFiler.SubscribeMetadata``).

The stream replays the filer's persisted metadata log from ``since_ns`` (inclusive) and then follows live
changes, so a subscriber that stored its last position misses nothing while it was away.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import grpc

from workers.bridge.sources.proto import filer_pb2, filer_pb2_grpc

# A dead filer behind a silent network is noticed by pings; weed's gRPC servers accept one a minute.
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # The caller retries with its own backoff; keep gRPC's reconnect delay short so a returning filer is
    # found within seconds (the default grows to two minutes).
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


class MetadataStream(Protocol):
    """What a subscribe call returns: an iterator of responses that another thread may cancel."""

    def __iter__(self) -> Iterator[filer_pb2.SubscribeMetadataResponse]: ...

    def __next__(self) -> filer_pb2.SubscribeMetadataResponse: ...

    def cancel(self) -> bool: ...


def open_channel(address: str) -> grpc.Channel:
    """An insecure channel to ``host:grpc_port`` (weed mini's filer listens on loopback without TLS)."""
    return grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)


def subscribe_metadata(
    channel: grpc.Channel,
    *,
    since_ns: int,
    path_prefix: str = "/buckets/",
    client_name: str = "landmarks-bridge",
    client_id: int = 0,
    client_epoch: int = 0,
) -> MetadataStream:
    """Open the stream of changes under ``path_prefix`` with ``ts_ns >= since_ns``.

    ``client_id``/``client_epoch`` let the filer drop an older stream of the same client after a reconnect.
    """
    stub = filer_pb2_grpc.SeaweedFilerStub(channel)
    request = filer_pb2.SubscribeMetadataRequest(
        client_name=client_name,
        path_prefix=path_prefix,
        since_ns=since_ns,
        client_id=client_id,
        client_epoch=client_epoch,
    )
    return stub.SubscribeMetadata(request)
