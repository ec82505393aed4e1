"""Putting photos into the photos bucket the way the photo service does: owner in metadata and in the key."""

from __future__ import annotations

import mimetypes
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from minio import Minio

from shared.storage import put_file

UNSAFE_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class UploadedObject:
    path: Path
    bucket: str
    key: str
    etag: str


def object_key(user: str, path: Path, *, unique: bool = False) -> str:
    """``users/<user>/<file name>``; control characters and backslashes are replaced, other unicode kept."""
    name = UNSAFE_KEY_CHARS.sub("_", path.name) or "photo"
    if unique:
        name = f"{uuid.uuid4().hex[:8]}-{name}"
    return f"users/{user}/{name}"


def upload_photos(
    client: Minio, bucket: str, user: str, paths: list[Path], *, unique: bool = False
) -> list[UploadedObject]:
    uploaded = []
    for path in paths:
        key = object_key(user, path, unique=unique)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        etag = put_file(client, bucket, key, path, metadata={"user": user}, content_type=content_type)
        uploaded.append(UploadedObject(path, bucket, key, etag))
    return uploaded
