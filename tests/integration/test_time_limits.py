"""Every kind of task has a soft and a hard time limit under the broker's visibility timeout, and a task past
its soft limit is a recorded failure (``time_limit``) that fails its photo."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import Photo, PhotoStatus, TaskFailure
from shared.photos import records as photos
from shared.settings import Settings

pytestmark = pytest.mark.integration


def test_every_task_kind_has_time_limits_under_the_visibility_timeout() -> None:
    from workers.celery_app import make_celery

    settings = Settings()
    app = make_celery(settings)
    app.loader.import_default_modules()
    ours = [task for name, task in app.tasks.items() if not name.startswith("celery.")]
    assert {t.name for t in ours} >= {"ingest.object_event", "recognition.recognize_photo", "training.train_model"}
    for task in ours:
        assert task.soft_time_limit and task.time_limit, task.name
        assert task.soft_time_limit < task.time_limit < settings.broker_visibility_timeout_s, task.name
    assert app.tasks["ingest.reconcile"].soft_time_limit == settings.time_limits.reconcile
    assert app.tasks["training.train_model"].soft_time_limit == settings.time_limits.training


def test_a_photo_task_past_its_soft_limit_fails_the_photo_with_a_reason(
    db_session: Session, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.context
    from workers.signals import _record_time_limit

    @contextmanager
    def session():
        with session_factory() as s, s.begin():
            yield s

    monkeypatch.setattr(tasks.context, "context", lambda: SimpleNamespace(session=session))
    created = photos.record_created(
        db_session, bucket="photos", key="users/tl/a.jpg", etag="e", size=1, content_type=None, owner="tl"
    )
    db_session.flush()

    def recognize_photo(photo_id: str) -> None: ...

    task = SimpleNamespace(name="recognition.recognize_photo", run=recognize_photo, soft_time_limit=600.0)
    _record_time_limit(task, "t-1", SoftTimeLimitExceeded(), [str(created.photo_id)], {})
    photo = db_session.get(Photo, created.photo_id)
    db_session.refresh(photo)
    assert photo.status == PhotoStatus.failed and photo.error.startswith("time_limit")
    failure = db_session.execute(select(TaskFailure).where(TaskFailure.photo_id == created.photo_id)).scalar_one()
    assert failure.reason.startswith("time_limit") and failure.task_id == "t-1"
