"""Training jobs: the idempotency key of a training run, so a redelivered message trains no second version.

A training message outliving the broker's visibility timeout (or its worker) is delivered again under the same
task id. The job row keyed by that id says what to do with it: ``done`` -> answer with the version already
trained; ``running`` and started within its lease -> another worker has it, do nothing; otherwise (new, failed,
or a run whose lease ran out because its worker died) -> run it. The job turns ``done`` in the transaction that
registers its version (:func:`finish`, passed to the publishing step), so a version never exists without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import ModelVersion, TrainingJob, TrainingJobStatus


@dataclass(frozen=True)
class Claim:
    """What to do with a delivery of a training job (``version``: the one it trained, when ``done``)."""

    action: Literal["run", "done", "busy"]
    version: str | None = None
    attempts: int = 1


def claim(session: Session, job_id: str, options: dict[str, Any], *, lease: timedelta) -> Claim:
    """Start the job, or say why not; ``lease``: how long a run may hold it (its hard time limit)."""
    created = session.execute(
        insert(TrainingJob)
        .values(id=job_id, status=TrainingJobStatus.running, options=options, started_at=func.now())
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(TrainingJob.id)
    ).scalar_one_or_none()
    if created is not None:
        return Claim("run")
    job = session.execute(select(TrainingJob).where(TrainingJob.id == job_id).with_for_update()).scalar_one()
    if job.status == TrainingJobStatus.done:
        version = session.get(ModelVersion, job.model_version_id) if job.model_version_id else None
        return Claim("done", version.version if version else None, job.attempts)
    expired = session.execute(select(func.now() - job.started_at > lease)).scalar_one()
    if job.status == TrainingJobStatus.running and not expired:
        return Claim("busy", None, job.attempts)
    job.status, job.error, job.finished_at = TrainingJobStatus.running, None, None
    job.started_at = func.now()
    job.attempts += 1
    return Claim("run", None, job.attempts)


def finish(session: Session, job_id: str, version: ModelVersion) -> None:
    """Mark the job done with its version: call it in the transaction that registers the version."""
    session.flush()
    job = session.execute(select(TrainingJob).where(TrainingJob.id == job_id).with_for_update()).scalar_one()
    job.status, job.model_version_id, job.finished_at = TrainingJobStatus.done, version.id, func.now()


def fail(session: Session, job_id: str, error: str) -> None:
    """Record why the run failed; a later delivery (or `landmarks model train` again) may run it once more."""
    job = session.execute(select(TrainingJob).where(TrainingJob.id == job_id).with_for_update()).scalar_one_or_none()
    if job is not None and job.status != TrainingJobStatus.done:
        job.status, job.error, job.finished_at = TrainingJobStatus.failed, error[:4000], func.now()
