"""Celery tasks of the `training` queue: a thin shell over :func:`shared.training.service.train_from_options`.

Progress goes to the result backend as task state ``PROGRESS`` with the phase, stage, epoch and loss.
``options["mode"]`` is ``features`` (default: the head on cached backbone features) or ``finetune`` (the last
``options["blocks"]`` backbone blocks too, on ``options["cached_views"]`` cached views per photo when set; the
bundle then carries them; ``options["head"]`` False publishes the tuned backbone without a head).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from shared.db.models import ModelVersion
from shared.training import jobs
from tasks.context import context

log = structlog.get_logger(__name__)
DEFAULT_LEASE_S = 4 * 3600.0  # without a time limit: the broker's default visibility timeout


@shared_task(name="training.train_model", bind=True, acks_late=True)
def train_model(self: Any, options: dict[str, Any], activate: bool = False) -> dict[str, Any]:
    """Train a model version; ``options`` are :class:`shared.training.trainer.TrainConfig` fields plus ``folds``,
    ``mode``, ``blocks``, ``cached_views`` and ``head``.

    The task id is the job's idempotency key (:mod:`shared.training.jobs`): a redelivery of a finished run answers
    with its version, one of a run still in progress does nothing, and a failure (its soft time limit too) is
    recorded on the job."""
    job_id = self.request.id
    # A run older than its soft limit has failed or is being killed (a hard-killed run's message comes back at
    # once, just under its hard limit): such a job may be taken over.
    lease = timedelta(seconds=self.soft_time_limit or DEFAULT_LEASE_S)
    with context().session() as session:
        claimed = jobs.claim(session, job_id, {**options, "activate": activate}, lease=lease)
    if claimed.action == "done":
        log.info("training_already_done", job=job_id, version=claimed.version)
        return {"action": "already_trained", "version": claimed.version}
    if claimed.action == "busy":
        log.warning("training_already_running", job=job_id)
        return {"action": "already_running"}

    def report(p: Any) -> None:
        self.update_state(state="PROGRESS", meta=p.as_meta())

    def done(session: Any, row: ModelVersion) -> None:
        jobs.finish(session, job_id, row)

    from shared.training import service

    ctx = context()
    try:
        row = service.train_from_options(
            ctx.settings,
            ctx.session_factory,
            ctx.minio,
            options,
            activate=activate,
            progress=report,
            on_registered=done,
        )
    except BaseException as exc:  # SoftTimeLimitExceeded too: recorded, then raised as Celery expects
        reason = "time_limit" if isinstance(exc, SoftTimeLimitExceeded) else type(exc).__name__
        with context().session() as session:
            jobs.fail(session, job_id, f"{reason}: {exc}")
        raise
    return {
        "action": "trained",
        "version": row.version,
        "status": row.status.value,
        "thresholds": row.thresholds,
        "attempts": claimed.attempts,
    }
