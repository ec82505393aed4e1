"""The worker's cached active version (tasks/context.py): a message that names a newer version than the one loaded
is recognised by that version at once, not after ACTIVE_VERSION_TTL_S (the activation race of `model activate V
--reprocess`: a job fed inside the window used to be recognised by the version it replaces)."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from celery_batches import SimpleRequest

from shared.settings import Settings
from tasks import context as context_module
from tasks.context import WorkerContext
from tasks.recognition import expected_version


class Registry:
    """The model versions table: which id is active, and which bundles were loaded."""

    def __init__(self, active: int) -> None:
        self.active = active
        self.lookups = 0
        self.loaded: list[int] = []

    def active_version(self, _session: Any) -> SimpleNamespace:
        self.lookups += 1
        return SimpleNamespace(id=self.active)

    def load_recognizer(self, version: SimpleNamespace, *_args: Any, **_kwargs: Any) -> str:
        self.loaded.append(version.id)
        return f"recognizer-{version.id}"


class Context(WorkerContext):
    @contextmanager
    def session(self):  # type: ignore[override]
        yield None

    @property
    def minio(self) -> None:  # type: ignore[override]
        return None

    @property
    def decode_threads(self) -> int:  # type: ignore[override]
        return 1


@pytest.fixture
def versions(monkeypatch: pytest.MonkeyPatch) -> Registry:
    fake = Registry(active=1)
    monkeypatch.setattr(context_module.registry, "active_version", fake.active_version)
    monkeypatch.setattr(context_module.registry, "load_recognizer", fake.load_recognizer)
    return fake


def test_a_message_naming_a_newer_version_is_recognised_by_it_at_once(versions: Registry) -> None:
    ctx = Context(Settings())
    assert ctx.recognizer() == (1, "recognizer-1")
    versions.active = 2  # `landmarks model activate` commits, then the job's messages name version 2
    assert ctx.recognizer() == (1, "recognizer-1")  # a live upload within the TTL: the cached version, no query
    assert ctx.recognizer(expected=2) == (2, "recognizer-2")  # no wait for the TTL
    assert versions.loaded == [1, 2]
    lookups = versions.lookups
    assert ctx.recognizer(expected=2) == (2, "recognizer-2") and versions.lookups == lookups  # cached again


def test_the_active_version_decides_when_the_message_names_another(versions: Registry) -> None:
    ctx = Context(Settings())
    ctx.recognizer()
    # Rolled back to 1 after the message for 3 was sent: the database is asked, version 1 stays.
    assert ctx.recognizer(expected=3) == (1, "recognizer-1")
    assert versions.loaded == [1] and versions.lookups == 2


def test_a_micro_batch_expects_the_newest_version_its_messages_name() -> None:
    def request(version: int | None) -> SimpleRequest:
        kwargs = {} if version is None else {"version_id": version}
        return SimpleRequest("id", "recognition.recognize_photo", ["p"], kwargs, {}, None, None, None, None, None)

    assert expected_version([request(None), request(None)]) is None
    assert expected_version([request(None), request(4), request(5)]) == 5
