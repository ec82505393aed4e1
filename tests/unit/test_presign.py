"""Presigned URLs are signed for the storage's public address, so a user's browser can follow them."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from shared.settings import S3Settings, Settings
from shared.storage import make_minio
from workers.api.deps import object_url
from workers.runtime import presigner_for


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LANDMARKS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _request(minio, presigner) -> SimpleNamespace:
    """What ``object_url`` reads of a request: the app's state."""
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(minio=minio, presigner=presigner)))


def _internal(s3: S3Settings):
    return make_minio(s3.endpoint, s3.access_key, s3.secret_key.get_secret_value(), secure=s3.secure, region=s3.region)


def test_public_url_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANDMARKS_S3__ENDPOINT", "seaweed.internal:8333")
    monkeypatch.setenv("LANDMARKS_S3__PUBLIC_URL", "https://photos.example.com/")

    s3 = Settings().s3

    assert s3.endpoint == "seaweed.internal:8333"
    assert s3.public_url == "https://photos.example.com"
    assert Settings(_env_file=None).s3.public_url == "https://photos.example.com"


@pytest.mark.parametrize("bad", ["photos.example.com", "ftp://photos.example.com", "https://example.com/s3"])
def test_public_url_must_be_an_origin(bad: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        S3Settings(public_url=bad)


def test_presigned_urls_use_the_public_origin_when_set() -> None:
    s3 = S3Settings(endpoint="seaweed.internal:8333", public_url="https://photos.example.com")
    presigner = presigner_for(s3)
    assert presigner is not None

    url = object_url(_request(_internal(s3), presigner), "photos", "users/alice/colosseum.jpg")  # type: ignore[arg-type]

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "photos.example.com",
        "/photos/users/alice/colosseum.jpg",
    )
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["3600"]
    assert (
        query["X-Amz-Credential"][0].startswith(f"{s3.access_key}/")
        and "/us-east-1/s3/" in query["X-Amz-Credential"][0]
    )
    assert query["X-Amz-SignedHeaders"] == ["host"]  # signed for the public host, so only that host validates it


def test_without_a_public_url_the_internal_client_signs() -> None:
    s3 = S3Settings(endpoint="127.0.0.1:8333")
    internal = _internal(s3)
    assert presigner_for(s3) is None

    url = object_url(_request(internal, internal), "photos", "users/alice/a.jpg")  # type: ignore[arg-type]

    assert url.startswith("http://127.0.0.1:8333/photos/users/alice/a.jpg?")
