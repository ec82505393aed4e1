"""`landmarks upload --wait` says where each photo went (issue 21 item 6), whole at 80 columns."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.photos.albums import PhotoPlacement
from shared.photos.uploads import UploadedObject
from workers.cli.main import app
from workers.cli.photos import describe_placement

LONG_NAME = "Cathedral Basilica of the Sacred Heart of Montmartre and Its Gardens"


@pytest.mark.parametrize(
    ("placement", "said"),
    [
        (PhotoPlacement("k", "done", [("Eiffel Tower", "Paris, France")]), "album Eiffel Tower (Paris, France)"),
        (PhotoPlacement("k", "done"), "no landmark"),
        (PhotoPlacement("k", "failed", error="decode: not an image"), "failed: decode: not an image"),
        (PhotoPlacement("k", "failed"), "failed: no reason recorded"),
        (PhotoPlacement("k", "deleted"), "deleted before it was recognised"),
        (PhotoPlacement("k", "missing"), "not seen by the workers yet (is the event bridge running?)"),
        (PhotoPlacement("k", "pending"), "still pending"),
    ],
)
def test_each_outcome_in_words(placement: PhotoPlacement, said: str) -> None:
    assert describe_placement(placement) == said


def test_upload_wait_prints_album_and_city_no_landmark_or_reason_at_80_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.photos.albums
    import shared.photos.uploads
    import workers.cli.photos
    import workers.runtime

    names = ["sacre_coeur_seen_from_the_steps_in_the_evening.jpg", "cat.jpg", "broken.jpg"]
    paths = []
    for name in names:
        (tmp_path / name).write_bytes(b"x")
        paths.append(tmp_path / name)
    keys = [f"users/alice/{n}" for n in names]
    placed = {
        keys[0]: PhotoPlacement(keys[0], "done", [(LONG_NAME, "Paris, France")]),
        keys[1]: PhotoPlacement(keys[1], "done"),
        keys[2]: PhotoPlacement(keys[2], "failed", error="undecodable: cannot identify image file"),
    }

    @contextmanager
    def no_database():
        yield None

    def uploaded(client, bucket, user, files, unique=False):
        return [UploadedObject(p, bucket, f"users/{user}/{p.name}", "etag") for p in files]

    monkeypatch.setattr(workers.runtime, "minio_client", lambda: None)
    monkeypatch.setattr(workers.runtime, "db_session", no_database)
    monkeypatch.setattr(shared.photos.uploads, "upload_photos", uploaded)
    monkeypatch.setattr(workers.cli.photos, "wait_for_photos", lambda b, k, t: {key: placed[key].status for key in k})
    monkeypatch.setattr(
        shared.photos.albums, "place_photos", lambda session, bucket, k: {key: placed[key] for key in k}
    )

    result = CliRunner().invoke(app, ["upload", "--user", "alice", "--wait", *map(str, paths)], env={"COLUMNS": "80"})

    assert result.exit_code == 0, result.output
    flat = result.output.replace("\n", "")  # long lines wrap at 80 columns; nothing is cut
    assert f"{paths[0]}: album {LONG_NAME} (Paris, France)" in flat
    assert f"{paths[1]}: no landmark" in flat
    assert f"{paths[2]}: failed: undecodable: cannot identify image file" in flat
    assert f"s3://photos/{keys[0]}" in flat


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch):
    """Settings and the session factory read afresh from the environment the test sets (and again after it)."""
    from shared.settings import get_settings
    from workers import runtime

    get_settings.cache_clear()
    runtime.session_factory.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()
    runtime.session_factory.cache_clear()


def test_albums_names_postgres_in_one_line_when_it_does_not_answer(fresh_settings: pytest.MonkeyPatch) -> None:
    fresh_settings.setenv("LANDMARKS_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:9/landmarks")
    result = CliRunner().invoke(app, ["albums", "--user", "alice"])
    assert result.exit_code == 1
    assert "error: PostgreSQL at postgresql+psycopg2://postgres@127.0.0.1:9/landmarks is unreachable" in result.output
    assert "Traceback" not in result.output


def test_upload_names_the_s3_server_in_one_line_when_it_does_not_answer(
    fresh_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fresh_settings.setenv("LANDMARKS_S3__ENDPOINT", "127.0.0.1:9")
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    result = CliRunner().invoke(app, ["upload", "--user", "alice", str(photo)])
    assert result.exit_code == 1
    assert "error: S3 server at 127.0.0.1:9 is unavailable" in result.output
    assert "Traceback" not in result.output
