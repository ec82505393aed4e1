"""Training never holds up uploads: an upload reaches its album while a training run is in progress.

The conftest stack (`weed mini`, the SeaweedFS bridge, ingest/recognize/albums workers, a demo model) plus a
worker on the ``training`` queue, as deployed: a separate process. A ``finetune`` run is started through Celery
(its epochs take seconds each on a CPU, and far too many are asked for it to end during the test); once the task
state reports PROGRESS with an epoch, a photo is uploaded, and it must be done and in its album while the run is
still in PROGRESS. The run is then terminated. Everything waits by polling with a deadline; nothing asserts
timings, only the order of events.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from sqlalchemy import select

from devtools.stack.testing import worker_app
from shared.db.models import Photo, PhotoStatus
from shared.photos.albums import list_albums

if TYPE_CHECKING:
    from celery.result import AsyncResult

    from tests.integration.conftest import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAINING_START_S = 900.0  # decoding the gallery and the first fine-tuning epoch on a loaded 2-core machine
DEADLINE_S = 180.0
POLL_S = 0.5
FINAL = {PhotoStatus.done, PhotoStatus.failed, PhotoStatus.deleted}
# Fine-tune the last two backbone blocks; a thousand epochs cannot end while one photo is processed.
LONG_RUN = {"mode": "finetune", "blocks": 2, "epochs": 1000, "folds": 2, "curriculum": False}
T = TypeVar("T")


@pytest.fixture(scope="module")
def training_worker(running_stack: RunningStack) -> str:
    """A worker on the ``training`` queue only, beside the stack's others (stopped with the stack)."""
    stack = running_stack.stack
    app = worker_app(stack.settings, "training", 1, uuid.uuid4().hex[:6])
    stack.apps[app.name] = app
    stack.start(app.name)
    return app.name


def wait_for(check: Callable[[], T | None], what: str, timeout: float = DEADLINE_S) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:g} s (last: {last!r})")
        time.sleep(POLL_S)


def training_epoch(run: AsyncResult) -> dict[str, Any] | None:
    """The run's PROGRESS meta once it reports an epoch; a run that ended already fails the test."""
    state = run.state
    if state in {"SUCCESS", "FAILURE", "REVOKED"}:
        pytest.fail(f"the training run ended ({state}: {run.info!r}) before it reported an epoch")
    meta = run.info if state == "PROGRESS" else None
    return meta if isinstance(meta, dict) and meta.get("epoch") else None


def final_photo(e2e: RunningStack, key: str) -> Photo | None:
    with e2e.factory() as session:
        photo = session.execute(select(Photo).where(Photo.bucket == e2e.bucket, Photo.key == key)).scalar_one_or_none()
        return photo if photo is not None and photo.status in FINAL else None


def test_an_upload_reaches_its_album_while_a_training_run_is_in_progress(
    e2e: RunningStack, training_worker: str
) -> None:
    celery = e2e.stack.celery()
    run = celery.send_task("training.train_model", args=[LONG_RUN], kwargs={"activate": False})
    try:
        progress = wait_for(lambda: training_epoch(run), "the training run to report an epoch", TRAINING_START_S)
        assert progress["phase"] == "finetune" and progress["loss"] is not None

        owner = f"carol-{uuid.uuid4().hex[:6]}"
        key = f"users/{owner}/taj_mahal.jpg"
        data = (e2e.upload_dir() / "alice" / "taj_mahal.jpg").read_bytes()
        e2e.minio.put_object(e2e.bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg")
        photo = wait_for(lambda: final_photo(e2e, key), f"{key} to be processed")
        training_state, training_meta = run.state, run.info

        assert photo.status == PhotoStatus.done
        with e2e.factory() as session:
            by_city = list_albums(session, owner).values()
            albums = {a.landmark_slug: [p.key for p in a.photos] for city in by_city for a in city}
        assert albums == {"taj_mahal": [key]}
        assert training_state == "PROGRESS", f"the training run ended ({training_state}) before the upload was done"
        assert isinstance(training_meta, dict) and training_meta["phase"] == "finetune"
    finally:
        celery.control.revoke(run.id, terminate=True, signal="SIGKILL")
    assert wait_for(lambda: run.state == "REVOKED", "the training run to be terminated")
