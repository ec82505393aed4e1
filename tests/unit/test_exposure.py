"""Network-facing services refuse a default or empty secret unless they listen on loopback only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.exposure import WeakSecret, is_loopback, refuse_weak_secrets

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "::1", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "bridge.example.com"])
def test_everything_else_is_exposed(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("secret", ["", "   ", "change-me-webhook-token", "change-me", "landmarks", None])
def test_a_default_or_empty_secret_on_an_exposed_address_is_refused(secret: str | None) -> None:
    with pytest.raises(WeakSecret, match="webhook token"):
        refuse_weak_secrets("bridge", "0.0.0.0", {"webhook token": secret}, defaults={"landmarks"})


def test_loopback_or_a_real_secret_starts() -> None:
    refuse_weak_secrets("bridge", "127.0.0.1", {"webhook token": "change-me-webhook-token"})
    refuse_weak_secrets("bridge", "0.0.0.0", {"webhook token": "b5d0f0c2e1a94e3f"})


def _landmarks(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LANDMARKS_", "FLOWER_"))}
    environ.update(PYTHONPATH=str(REPO), LANDMARKS_BROKER_URL="redis://127.0.0.1:1/0", **env)
    code = 'from workers.cli.main import app; app(prog_name="landmarks")'
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=environ, cwd="/", capture_output=True, text=True, timeout=60
    )


def test_the_bridge_with_the_default_token_on_all_addresses_does_not_start() -> None:
    done = _landmarks("bridge", "run", "--source", "webhook", "--host", "0.0.0.0")
    assert done.returncode == 1 and "webhook token" in done.stderr and "unreachable" not in done.stderr


def test_the_api_with_the_demo_token_on_all_addresses_does_not_start() -> None:
    done = _landmarks(
        "api", "serve", "--host", "0.0.0.0", LANDMARKS_DATABASE_URL="postgresql+psycopg2://x@127.0.0.1:1/x"
    )
    assert done.returncode == 1 and "API token" in done.stderr and "unreachable" not in done.stderr


def test_flower_with_the_default_password_on_all_addresses_does_not_start() -> None:
    done = _landmarks("flower", "--address", "0.0.0.0")
    assert done.returncode == 1 and "Flower password" in done.stderr
