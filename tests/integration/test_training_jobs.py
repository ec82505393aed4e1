"""Training runs have a job row keyed by their task id: a redelivered training message trains no second version,
a run whose worker died is taken over after its lease, and a failure (a soft time limit too) is recorded."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

import tasks.training
from shared.db.models import ModelStatus, ModelVersion, TrainingJob, TrainingJobStatus
from shared.training import jobs
from shared.versions import registry

pytestmark = pytest.mark.integration

LEASE = timedelta(hours=1)


def test_a_job_runs_once_and_answers_redeliveries_with_its_version(db_session: Session) -> None:
    assert jobs.claim(db_session, "job-a", {"epochs": 1}, lease=LEASE).action == "run"
    assert jobs.claim(db_session, "job-a", {"epochs": 1}, lease=LEASE).action == "busy"  # still running elsewhere
    row = ModelVersion(version="jobs-v1", backbone="b", status=ModelStatus.ready)
    db_session.add(row)
    jobs.finish(db_session, "job-a", row)
    again = jobs.claim(db_session, "job-a", {"epochs": 1}, lease=LEASE)
    assert (again.action, again.version) == ("done", "jobs-v1")


def test_a_run_past_its_lease_or_failed_is_run_again(db_session: Session) -> None:
    jobs.claim(db_session, "job-b", {}, lease=LEASE)
    db_session.execute(update(TrainingJob).values(started_at=func.now() - timedelta(hours=2)))
    assert jobs.claim(db_session, "job-b", {}, lease=LEASE) == jobs.Claim("run", None, 2)  # its worker died
    jobs.fail(db_session, "job-b", "time_limit: soft time limit exceeded")
    assert db_session.get(TrainingJob, "job-b").status == TrainingJobStatus.failed
    assert jobs.claim(db_session, "job-b", {}, lease=LEASE).action == "run"


@pytest.fixture
def task_context(session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The training task over the test's transaction, with a stand-in for the training itself that registers a
    version through the real publishing hook; returns the calls it got."""
    calls: list[dict[str, Any]] = []

    @contextmanager
    def session():
        with session_factory() as s, s.begin():
            yield s

    ctx = SimpleNamespace(session=session, settings=SimpleNamespace(), session_factory=None, minio=None)
    monkeypatch.setattr(tasks.training, "context", lambda: ctx)

    def train(
        _settings: Any,
        _factory: Any,
        _client: Any,
        options: dict[str, Any],
        *,
        activate: bool = False,
        progress: Any = None,
        on_registered: Any = None,
    ):
        calls.append(options)
        if options.get("explode"):
            raise SoftTimeLimitExceeded()
        with session() as s:
            row = registry.register_version(
                s, version=f"trained-{len(calls)}", backbone="b", artifact_uri="s3://m/x", thresholds={}, metrics={}
            )
            on_registered(s, row)
            s.expunge(row)
        return row

    monkeypatch.setattr("shared.training.service.train_from_options", train)
    return calls


def test_a_redelivered_training_message_trains_no_second_version(task_context, db_session: Session) -> None:
    first = tasks.training.train_model.apply(args=[{"epochs": 1}], task_id="train-1").get()
    again = tasks.training.train_model.apply(args=[{"epochs": 1}], task_id="train-1").get()
    assert first["version"] == again["version"] == "trained-1" and again["action"] == "already_trained"
    assert len(task_context) == 1
    versions = db_session.execute(select(ModelVersion.version).where(ModelVersion.version.like("trained-%")))
    assert versions.scalars().all() == ["trained-1"]


def test_a_soft_time_limit_fails_the_job_with_a_reason(task_context, db_session: Session) -> None:
    result = tasks.training.train_model.apply(args=[{"explode": True}], task_id="train-2")
    assert isinstance(result.result, SoftTimeLimitExceeded)
    job = db_session.get(TrainingJob, "train-2")
    assert job.status == TrainingJobStatus.failed and job.error.startswith("time_limit")
