"""The recognize task's order of work, with its services stubbed: a photo's run is closed in PostgreSQL before its
result is sent to the albums queue, whose transaction locks the same photo row (the update waited for it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

import tasks.albums
from shared.photos import recognize
from shared.photos.recognize import PhotoRef
from shared.recognition.outcome import LandmarkMatch, RecognitionOutcome
from shared.settings import Settings
from tasks import recognition

OUTCOME = RecognitionOutcome([LandmarkMatch("colosseum", 0.9, "global+verified", True)], {}, {"decode": 1.0})


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    @contextmanager
    def session() -> Iterator[None]:
        yield None

    ctx = SimpleNamespace(
        settings=Settings(), session=session, minio=None, decode_threads=1, recognizer=lambda: (7, object())
    )
    monkeypatch.setattr(recognition, "context", lambda: ctx)
    monkeypatch.setattr(
        recognize, "claim_photo", lambda _s, pid, **_: PhotoRef(pid, "photos", f"users/u/{pid}.jpg", "etag")
    )
    monkeypatch.setattr(recognize, "begin_runs", lambda _s, ids: seen.append(f"begin {len(ids)}"))
    monkeypatch.setattr(recognize, "end_runs", lambda _s, ids: seen.append(f"end {len(ids)}"))
    monkeypatch.setattr(recognize, "recognize_objects", lambda _c, _r, refs, **_: [OUTCOME] * len(refs))
    monkeypatch.setattr(tasks.albums.apply_recognition, "delay", lambda *_a, **_k: seen.append("albums"))
    return seen


def test_a_photos_run_ends_before_its_result_goes_to_the_albums_queue(events: list[str]) -> None:
    result = recognition.recognize_photo.run(str(uuid.uuid4()))
    assert result["action"] == "recognized"
    assert events == ["begin 1", "end 1", "albums"]


def test_a_micro_batchs_runs_end_before_its_results_go_on(events: list[str]) -> None:
    requests: list[Any] = [SimpleNamespace(id=f"task-{i}", args=[str(uuid.uuid4())], kwargs={}) for i in range(3)]
    ended = recognition.run_batch(recognition.context(), recognition.recognize_photo, requests)
    assert [run.result["action"] for run in ended.values()] == ["recognized"] * 3
    assert events == ["begin 3", "end 3", "albums", "albums", "albums"]
