"""Names that come from object storage never become paths outside the folder they are meant for.

The only places that write files named after bucket contents are the model bundle download (the version is the
key prefix, the manifest lists file names) and the demo (resource names inside Debian's .rcc archives, reduced to
their base name). Photos themselves are never written to disk: the pipeline reads them into memory.
A private `weed mini` serves the hostile bundles; nothing here touches a dev stack.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from devtools.stack import seaweed
from devtools.stack.testing import private_seaweed
from shared.recognition.bundle import MANIFEST, BundleIntegrityError, download_bundle

pytestmark = [pytest.mark.integration]

BUCKET = "models-isolation"
ESCAPES = ("../../etc/passwd", "/etc/passwd", "sub/../../../escaped", "..", "../escaped", "")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    """A private `weed mini` on free ports with one models bucket."""
    state = tmp_path_factory.mktemp("weed-isolation")
    with private_seaweed(state, models_bucket=BUCKET, photos_bucket="p-iso", gallery_bucket="g-iso") as settings:
        yield seaweed.client(settings.s3)


def put(client: Minio, key: str, data: bytes) -> None:
    client.put_object(BUCKET, key, io.BytesIO(data), len(data))


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ESCAPES)
def test_a_bundle_manifest_cannot_name_a_file_outside_the_bundle(s3: Minio, tmp_path: Path, name: str) -> None:
    version = f"v-evil-{abs(hash(name)) % 10**8}"
    manifest = {"files": {name: hashlib.sha256(b"root:x:0:0\n").hexdigest()}}
    put(s3, f"{version}/{MANIFEST}", json.dumps(manifest).encode())
    put(s3, f"{version}/escaped", b"root:x:0:0\n")  # what a "../escaped" fetch would find, should it try
    store = tmp_path / "sandbox" / "models"
    store.mkdir(parents=True)
    passwd = digest(Path("/etc/passwd"))

    # Refused by the manifest check, or ("..", "") by the minio client before any file is written.
    with pytest.raises((BundleIntegrityError, ValueError)):
        download_bundle(s3, BUCKET, version, store / version)

    assert tree(tmp_path) == {"sandbox", "sandbox/models"}, "something was written or left behind"
    assert digest(Path("/etc/passwd")) == passwd


REPO = Path(__file__).resolve().parents[2]


def test_only_the_bundle_download_writes_objects_to_disk() -> None:
    """A guard for review: any new code that saves objects as files must sanitise the name as the bundle does."""
    writers = sorted(
        path.relative_to(REPO).as_posix()
        for package in ("shared", "workers", "tasks")
        for path in (REPO / package).rglob("*.py")
        if "fget_object(" in path.read_text()
    )
    assert writers == ["shared/recognition/bundle.py"]


@pytest.mark.parametrize("version", ["../../etc", "/etc", "v1/../../..", "..", ""])
def test_a_version_name_cannot_place_its_bundle_outside_the_model_store(tmp_path: Path, version: str) -> None:
    from shared.versions.registry import local_bundle_dir

    store = (tmp_path / "models").resolve()
    with pytest.raises(ValueError, match="unsafe model version name"):
        local_bundle_dir(store, version)
    assert local_bundle_dir(store, "v0003-20261125T120501").resolve().is_relative_to(store)
