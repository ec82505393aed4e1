"""S3 answers sorted into what the tasks do with them: missing (permanent), unavailable (retried), or raised."""

from __future__ import annotations

import pytest
import urllib3
from minio.error import S3Error

from shared.errors import TransientError
from shared.storage import ObjectMissing, _object_errors, make_minio

CLIENT = make_minio("127.0.0.1:9", "key", "secret")  # never contacted: only its address goes into messages


def s3_error(status: int, code: str) -> S3Error:
    return S3Error(urllib3.HTTPResponse(status=status), code, "message", "/photos/k.jpg", "req", "host")


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "SlowDown"), (502, "BadGateway")])
def test_server_errors_are_retried_as_unavailable(status: int, code: str) -> None:
    with pytest.raises(TransientError, match="127.0.0.1:9 is unavailable"), _object_errors(CLIENT, "photos", "k.jpg"):
        raise s3_error(status, code)


def test_a_missing_object_is_permanent() -> None:
    with pytest.raises(ObjectMissing, match="s3://photos/k.jpg"), _object_errors(CLIENT, "photos", "k.jpg"):
        raise s3_error(404, "NoSuchKey")


def test_other_client_errors_are_raised_as_they_are() -> None:
    with pytest.raises(S3Error) as caught, _object_errors(CLIENT, "photos", "k.jpg"):
        raise s3_error(403, "AccessDenied")
    assert not isinstance(caught.value, TransientError) and caught.value.code == "AccessDenied"
