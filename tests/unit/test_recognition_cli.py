"""`landmarks recognize` end to end on drawn photos with a bundle built by the shared builder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from shared.recognition import LandmarkInfo, build_bundle_from_embeddings, save_bundle
from workers.cli.main import app


def _tower(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (200, 260), (140, 190, 235))
    d = ImageDraw.Draw(im)
    j = int(rng.integers(-6, 6))
    d.rectangle([85 + j, 40, 115 + j, 250], fill=(110, 80, 50))
    d.polygon([(70 + j, 60), (100 + j, 5), (130 + j, 60)], fill=(60, 60, 60))
    return im


def _noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (220, 220, 3), dtype=np.uint8))


def test_recognize_prints_json_and_writes_an_explanation(tmp_path: Path) -> None:
    from shared.model import Embedder, EmbedderConfig

    embedder = Embedder(EmbedderConfig(image_size=128), device="cpu", threads=1)
    gallery = embedder.embed([_tower(i) for i in range(6)])
    negatives = embedder.embed([_noise(i) for i in range(6)])
    bundle = build_bundle_from_embeddings(
        version="v-cli",
        model=embedder.describe(),
        landmarks=[LandmarkInfo(1, "tower", "Drawn Tower", "Paintville", "Nowhere", None, None)],
        gallery=gallery,
        gallery_landmarks=np.ones(6, dtype=np.int64),
        non_landmarks=negatives,
        margin_share=0.0,
    )
    folder = save_bundle(bundle, tmp_path / "bundle")
    photo = tmp_path / "tower.jpg"
    _tower(99).save(photo)
    explain = tmp_path / "explain.png"

    result = CliRunner().invoke(
        app, ["recognize", str(photo), "--bundle", str(folder), "--json", "--explain", str(explain)]
    )
    assert result.exit_code == 0, result.output
    line = next(s for s in result.stdout.splitlines() if s.startswith("{"))
    out = json.loads(line)
    assert out["model_version"] == "v-cli" and out["method"] in {"global+verified", "none"}
    assert out["path"] == str(photo)
    with Image.open(explain) as im:  # the decoded (reduced) photo, aspect kept
        assert im.mode == "RGB" and abs(im.width / im.height - 200 / 260) < 0.02


def test_recognize_without_a_bundle_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["recognize", str(tmp_path / "x.jpg"), "--bundle", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no model bundle" in result.output


VERSION = "v0001-20261204T101010"  # as `landmarks model build` names versions


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved bundle standing in for ``s3://models/<VERSION>/`` (what `model build` uploads)."""
    from shared.model import Embedder, EmbedderConfig

    tmp = tmp_path_factory.mktemp("published")
    embedder = Embedder(EmbedderConfig(image_size=128), device="cpu", threads=1)
    bundle = build_bundle_from_embeddings(
        version=VERSION,
        model=embedder.describe(),
        landmarks=[LandmarkInfo(1, "tower", "Drawn Tower", "Paintville", "Nowhere", None, None)],
        gallery=embedder.embed([_tower(i) for i in range(6)]),
        gallery_landmarks=np.ones(6, dtype=np.int64),
        non_landmarks=embedder.embed([_noise(i) for i in range(6)]),
        margin_share=0.0,
    )
    return save_bundle(bundle, tmp / VERSION)


class FolderS3:
    """The models bucket as a folder: ``fget_object`` copies ``<version>/<name>`` out of it."""

    def __init__(self, root: Path) -> None:
        self.root, self.fetched = root, []

    def fget_object(self, bucket: str, key: str, path: str) -> None:
        self.fetched.append(key)
        shutil.copyfile(self.root / key, path)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """Settings read afresh from the environment the test sets (and again after it)."""
    from shared.settings import get_settings
    from workers import runtime

    monkeypatch.setenv("LANDMARKS_MODEL_STORE", str(tmp_path / "store"))
    get_settings.cache_clear()
    runtime.session_factory.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()
    runtime.session_factory.cache_clear()


def _registry_says(monkeypatch: pytest.MonkeyPatch, version: str | None) -> None:
    import shared.versions.registry
    import workers.runtime

    @contextmanager
    def no_database() -> Iterator[None]:
        yield None

    monkeypatch.setattr(workers.runtime, "db_session", no_database)
    row = SimpleNamespace(version=version) if version else None
    monkeypatch.setattr(shared.versions.registry, "active_version", lambda session: row)


def _recognize(photo: Path, *args: str):
    return CliRunner().invoke(app, ["recognize", str(photo), *args], env={"COLUMNS": "80"})


def test_recognize_uses_the_active_version_fetched_once_then_cached(
    published: Path, settings_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import workers.runtime

    _registry_says(settings_env, VERSION)
    s3 = FolderS3(published.parent)
    settings_env.setattr(workers.runtime, "minio_client", lambda: s3)
    photo = tmp_path / "tower.jpg"
    _tower(99).save(photo)

    first = _recognize(photo, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout.splitlines()[-1])["model_version"] == VERSION
    assert s3.fetched and (tmp_path / "store" / VERSION / "manifest.json").exists()

    s3.fetched.clear()
    again = _recognize(photo)  # the table, at 80 columns: the version is printed whole
    assert again.exit_code == 0, again.output
    assert s3.fetched == []  # the cached copy verified by its hashes
    assert f"model {VERSION}" in again.output and "…" not in again.output
    assert any(line.startswith("method: ") and line.split(": ")[1] in {"global+verified", "none"}
               for line in again.output.splitlines())  # fmt: skip


def test_recognize_says_when_no_version_is_active(settings_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _registry_says(settings_env, None)
    result = _recognize(tmp_path / "x.jpg")
    assert result.exit_code == 1
    assert "no active model version: run `landmarks model build --activate`" in result.output


def test_recognize_names_postgres_when_it_does_not_answer(settings_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings_env.setenv("LANDMARKS_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:9/landmarks")
    result = _recognize(tmp_path / "x.jpg")
    assert result.exit_code == 1
    assert "PostgreSQL at postgresql+psycopg2://postgres@127.0.0.1:9/landmarks is unreachable" in result.output


def test_recognize_names_s3_when_it_does_not_answer(settings_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _registry_says(settings_env, VERSION)
    settings_env.setenv("LANDMARKS_S3__ENDPOINT", "127.0.0.1:9")
    result = _recognize(tmp_path / "x.jpg")
    assert result.exit_code == 1
    assert f"model {VERSION}: the S3 server at 127.0.0.1:9 is unreachable" in result.output
