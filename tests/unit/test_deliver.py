"""What a recognize run sends to the albums queue carries the content (etag) it was computed for."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.errors import PermanentError
from shared.photos.recognize import PhotoRef


def test_a_failure_travels_with_the_etag_it_was_computed_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.albums
    from tasks.recognition import deliver

    sent: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(tasks.albums.record_photo_failure, "delay", lambda *a, **kw: sent.append((a, kw)))
    ref = PhotoRef(uuid.uuid4(), "photos", "users/alice/a.jpg", "etag-v1")
    result = deliver(str(ref.photo_id), ref, 1, PermanentError("undecodable", "bad"), task_name="t", task_id="1")
    assert result == {"action": "failed", "reason": "undecodable"}
    [(args, kwargs)] = sent
    assert args[0] == str(ref.photo_id) and kwargs["etag"] == "etag-v1"
