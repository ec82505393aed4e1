"""Passwords in service URLs never reach operators: one helper for errors and `landmarks status --json`."""

from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import typer

from shared.ops.redact import redact_text, redact_url

SECRET = "s3cr%2Ft-pw"  # percent-encoded "s3cr/t-pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@redis:6379/0", "redis://:***@redis:6379/0"),
        (f"rediss://celery:{SECRET}@redis.example:6380/1", "rediss://celery:***@redis.example:6380/1"),
        (f"postgresql+psycopg2://app:{SECRET}@db/landmarks", "postgresql+psycopg2://app:***@db/landmarks"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),
        (f"redis://:{SECRET}@a:6379/0;redis://:{SECRET}@b:6379/0", "redis://:***@a:6379/0;redis://:***@b:6379/0"),
    ],
)
def test_redact_url_masks_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_the_password_however_it_is_written() -> None:
    url = f"redis://:{SECRET}@redis:6379/0"
    text = f"cannot reach {url}: AUTH s3cr/t-pw refused ({SECRET})"
    assert redact_text(text, url) == "cannot reach redis://:***@redis:6379/0: AUTH *** refused (***)"
    assert redact_text("nothing secret", "redis://redis:6379/0") == "nothing secret"


class _DownRedis:
    def __getattr__(self, _name: str) -> Any:
        raise redis.ConnectionError(f"Error connecting to redis://:{SECRET}@10.0.0.9:6379/0")

    def __enter__(self) -> _DownRedis:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


class _App:
    class conf:  # noqa: N801 - Celery's attribute name
        broker_url = f"redis://:{SECRET}@10.0.0.9:6379/0"
        broker_transport_options: dict[str, Any] = {}


def test_fleet_errors_hide_the_broker_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import fleet

    monkeypatch.setattr(fleet, "_redis", lambda _app: _DownRedis())
    for call in (lambda: fleet.queue_depths(_App, ["recognize"]), lambda: fleet.unacked_count(_App)):
        with pytest.raises(fleet.BrokerUnavailable) as caught:
            call()
        assert SECRET not in str(caught.value) and "s3cr/t-pw" not in str(caught.value)
        assert "10.0.0.9" in str(caught.value)


def test_status_json_and_broker_errors_hide_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import get_settings
    from workers.cli import bridge as cli_bridge
    from workers.cli import ops as cli_ops

    class Connection:
        def __enter__(self) -> Connection:
            return self

        def __exit__(self, *_exc: object) -> None:
            return None

        def ensure_connection(self, **_kwargs: object) -> None:
            raise OSError(f"connection to {get_settings().broker_url} refused")

    class Celery:
        def connection_for_write(self) -> Connection:
            return Connection()

    monkeypatch.setenv("LANDMARKS_BROKER_URL", _App.conf.broker_url)
    get_settings.cache_clear()
    echoed: list[str] = []
    for module in (cli_bridge, cli_ops):
        monkeypatch.setattr(module.typer, "echo", lambda message, **_kw: echoed.append(str(message)))
    # the CLI imports these inside the command (it starts without SQLAlchemy or Celery): patched where they live
    monkeypatch.setattr("workers.runtime.db_rows", contextlib.nullcontext)
    monkeypatch.setattr(
        "shared.ops.status.database_status",
        lambda _rows: SimpleNamespace(**{**dict.fromkeys(DB_FIELDS), "reprocess_jobs": []}),
    )
    monkeypatch.setattr("workers.broker.connect", lambda _url, **_kw: _DownRedis())
    try:
        with pytest.raises(typer.Exit):
            cli_bridge._check_broker(get_settings(), Celery())
        cli_ops._broker_error(OSError(f"{get_settings().broker_url} down"))
        cli_ops.status_command(as_json=True)
    finally:
        get_settings.cache_clear()
    assert len(echoed) == 3
    assert json.loads(echoed[2])["broker"]["url"] == "redis://:***@10.0.0.9:6379/0"
    for text in echoed:
        assert "10.0.0.9" in text
        assert SECRET not in text and "s3cr/t-pw" not in text, text


DB_FIELDS = ("now", "photos", "photos_approximate", "failures_last_hour", "open_failures", "model", "bridge")
