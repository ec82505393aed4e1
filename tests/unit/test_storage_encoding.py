"""Objects stored with ``Content-Encoding: gzip``: their decoded size is bounded by the same cap as their size.

The S3 client's HTTP library would inflate such a body on its own; how much it inflates per read has changed
between urllib3 releases (one read could return a whole bomb before 2.6), so read_object takes the body as
stored and inflates it itself, never past ``max_bytes``.
"""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
import urllib3

from shared.storage import read_object

CAP = 4 << 20


def gzip_of_zeros(mib: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join([packer.compress(block) for _ in range(mib)] + [packer.flush()])


class Client:
    """``get_object`` answering with one prepared HTTP response."""

    def __init__(self, response: object) -> None:
        self.response = response

    def get_object(self, _bucket: str, _key: str) -> object:
        return self.response


def real_response(body: bytes, encoding: str | None) -> urllib3.HTTPResponse:
    headers = {"Content-Length": str(len(body)), **({"Content-Encoding": encoding} if encoding else {})}
    return urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers, status=200, preload_content=False)


class EagerInflater:
    """A response whose library inflates a whole gzip body in one read when asked to decode (old urllib3)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers = {"Content-Encoding": "gzip", "Content-Length": str(len(body))}

    def stream(self, amt: int, decode_content: bool | None = None) -> Iterator[bytes]:
        if decode_content is False:
            yield from (self.body[i : i + amt] for i in range(0, len(self.body), amt))
        else:
            yield gzip.decompress(self.body)

    def close(self) -> None: ...

    def release_conn(self) -> None: ...


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate"])
def test_an_encoded_photo_is_read_decoded(encoding: str) -> None:
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 100
    body = zlib.compress(photo) if encoding == "deflate" else gzip.compress(photo)
    assert read_object(Client(real_response(body, encoding)), "b", "k", max_bytes=CAP) == photo


def test_an_unencoded_object_is_read_as_it_is() -> None:
    body = gzip.compress(b"stored compressed, served as such")
    assert read_object(Client(real_response(body, None)), "b", "k", max_bytes=CAP) == body


@pytest.mark.parametrize("make", [real_response, lambda body, _enc: EagerInflater(body)], ids=["urllib3", "eager"])
def test_a_gzip_bomb_is_refused_without_inflating_past_the_cap(make) -> None:  # type: ignore[no-untyped-def]
    bomb = gzip_of_zeros(64)  # 64 MiB of zeros in ~64 KB
    assert len(bomb) < CAP
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="larger than"):
            read_object(Client(make(bomb, "gzip")), "b", "k", max_bytes=CAP)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * CAP
