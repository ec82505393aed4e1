"""The recognize task's order of work, with its services stubbed: a photo's run is closed in PostgreSQL before its
result is sent to the albums queue, whose transaction locks the same photo row (the update waited for it), and a
plain run claims and counts the photo in one transaction."""

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

    opened: list[int] = []

    @contextmanager
    def session() -> Iterator[int]:
        opened.append(len(opened))
        yield opened[-1]

    def model(expected: int | None = None) -> tuple[int, object]:
        seen.append("model")
        return 7, object()

    def claim(session: int, pid: uuid.UUID, **_: Any) -> PhotoRef:
        seen.append(f"claim in {session}")
        return PhotoRef(pid, "photos", f"users/u/{pid}.jpg", "etag")

    ctx = SimpleNamespace(settings=Settings(), session=session, minio=None, decode_threads=1, recognizer=model)
    monkeypatch.setattr(recognition, "context", lambda: ctx)
    monkeypatch.setattr(recognize, "claim_photo", claim)
    monkeypatch.setattr(recognize, "begin_runs", lambda s, ids: seen.append(f"begin {len(ids)} in {s}"))
    monkeypatch.setattr(recognize, "end_runs", lambda s, ids: seen.append(f"end {len(ids)} in {s}"))
    monkeypatch.setattr(recognize, "recognize_objects", lambda _c, _r, refs, **_: [OUTCOME] * len(refs))
    monkeypatch.setattr(tasks.albums.apply_recognition, "delay", lambda *_a, **_k: seen.append("albums"))
    return seen


def test_a_photos_run_ends_before_its_result_goes_to_the_albums_queue(events: list[str]) -> None:
    result = recognition.recognize_photo.run(str(uuid.uuid4()))
    assert result["action"] == "recognized"
    # the model before the claim, the claim and the run's count in one transaction, two transactions a photo
    assert events == ["model", "claim in 0", "begin 1 in 0", "end 1 in 1", "albums"]


def test_a_micro_batchs_runs_end_before_its_results_go_on(events: list[str]) -> None:
    requests: list[Any] = [SimpleNamespace(id=f"task-{i}", args=[str(uuid.uuid4())], kwargs={}) for i in range(3)]
    ended = recognition.run_batch(recognition.context(), recognition.recognize_photo, requests)
    assert [run.result["action"] for run in ended.values()] == ["recognized"] * 3
    claims = ["claim in 0", "claim in 1", "claim in 2"]  # each photo's claim alone: one bad row fails one photo
    assert events == [*claims, "model", "begin 3 in 3", "end 3 in 4", "albums", "albums", "albums"]
