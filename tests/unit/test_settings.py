"""The settings object: defaults that work on a laptop, LANDMARKS_* overrides, secrets kept out of logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from shared.settings import REPO_ROOT, Settings, get_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No LANDMARKS_* from the caller's shell, and no .env from the working directory."""
    for name in list(os.environ):
        if name.upper().startswith("LANDMARKS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_point_at_local_services() -> None:
    settings = Settings()

    assert settings.database_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/landmarks"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.s3.endpoint == "127.0.0.1:8333"
    assert settings.s3.secure is False
    assert settings.recognition.device == "auto"
    assert settings.recognition.weights_path is None
    assert settings.state_dir == REPO_ROOT / ".landmarks"


def test_environment_overrides_top_level_and_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANDMARKS_DATABASE_URL", "postgresql+psycopg2://app@db.internal:5433/albums")
    monkeypatch.setenv("LANDMARKS_S3__ENDPOINT", "minio.internal:9000")
    monkeypatch.setenv("LANDMARKS_S3__SECURE", "true")
    monkeypatch.setenv("LANDMARKS_RECOGNITION__GEO_RADIUS_KM", "2.5")
    monkeypatch.setenv("LANDMARKS_RECOGNITION__WEIGHTS_PATH", "/opt/weights/resnet50.pth")
    monkeypatch.setenv("LANDMARKS_WEBHOOK_PORT", "9000")

    settings = Settings()

    assert settings.database_url == "postgresql+psycopg2://app@db.internal:5433/albums"
    assert settings.s3.endpoint == "minio.internal:9000"
    assert settings.s3.secure is True
    assert settings.s3.photos_bucket == "photos"  # siblings of an overridden nested value keep defaults
    assert settings.recognition.geo_radius_km == 2.5
    assert settings.recognition.weights_path == Path("/opt/weights/resnet50.pth")
    assert settings.webhook_port == 9000


def test_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LANDMARKS_LOG_LEVEL=DEBUG\nLANDMARKS_FLOWER__PORT=5600\n")

    settings = Settings()

    assert (settings.log_level, settings.flower.port) == ("DEBUG", 5600)


def test_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LANDMARKS_LOG_LEVEL=DEBUG\n")
    monkeypatch.setenv("LANDMARKS_LOG_LEVEL", "WARNING")

    assert Settings().log_level == "WARNING"


def test_invalid_value_is_a_validation_error_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANDMARKS_API_PORT", "not-a-port")

    with pytest.raises(ValidationError, match="api_port"):
        Settings()


def test_secrets_are_not_shown_in_repr_or_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANDMARKS_S3__SECRET_KEY", "s3-topsecret")
    monkeypatch.setenv("LANDMARKS_WEBHOOK_TOKEN", "hook-topsecret")
    monkeypatch.setenv("LANDMARKS_FLOWER__PASSWORD", "flower-topsecret")

    settings = Settings()
    shown = " ".join([repr(settings), str(settings), settings.model_dump_json()])

    assert "topsecret" not in shown
    assert isinstance(settings.s3.secret_key, SecretStr)
    assert settings.s3.secret_key.get_secret_value() == "s3-topsecret"
    assert settings.webhook_token.get_secret_value() == "hook-topsecret"
    assert settings.flower.password.get_secret_value() == "flower-topsecret"


def test_get_settings_is_read_once_per_process() -> None:
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()
