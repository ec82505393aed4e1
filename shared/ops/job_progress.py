"""Reprocess jobs as /metrics and the API report them: jobs per state, and how far each live job has come.

A job's row knows what it selected (``total``) and sent; what the workers finished since it began is
:func:`shared.ops.jobs.processed_since`, a COUNT over the job's selection (an index range, but as long as the
selection). It runs under a statement timeout, so a scrape or a request on a huge job answers without that figure
(``processed`` None) rather than hang.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared.db.models import JobState, ReprocessJob
from shared.ops import jobs
from shared.ops.status import JobSummary, job_summaries, job_summary, session_rows

#: How long one job's processed count may take (ms) before it is left out.
COUNT_TIMEOUT_MS = 2000
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement stopped by statement_timeout


@dataclass(frozen=True)
class JobProgress:
    job: JobSummary
    processed: int | None  # photos of the job finished since it began (an upper estimate); None: not counted

    @property
    def remaining(self) -> int | None:
        if self.processed is None or self.job.total is None:
            return None
        return max(0, self.job.total - self.processed)


def jobs_by_state(session: Session) -> dict[str, int]:
    """How many jobs are in each state (every state listed, zeros included)."""
    counts = dict.fromkeys((state.value for state in JobState), 0)
    for state, count in session.execute(select(ReprocessJob.state, func.count()).group_by(ReprocessJob.state)):
        counts[state.value] = count
    return counts


def processed_count(session: Session, job_id: int, *, timeout_ms: int = COUNT_TIMEOUT_MS) -> int | None:
    """``processed_since`` for the job, or None when it would take longer than ``timeout_ms``."""
    try:
        with session.begin_nested():  # a cancelled count aborts only this savepoint (and its timeout setting)
            previous = session.execute(select(func.current_setting("statement_timeout"))).scalar_one()
            session.execute(select(func.set_config("statement_timeout", str(int(timeout_ms)), True)))
            count = jobs.processed_since(session, jobs.get_job(session, job_id))
            session.execute(select(func.set_config("statement_timeout", previous, True)))
            return count
    except OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) == QUERY_CANCELED:
            return None
        raise


def progress(session: Session, job_id: int, *, timeout_ms: int = COUNT_TIMEOUT_MS) -> JobProgress | None:
    """One job with its processed count (None: no such job)."""
    summary = job_summary(session_rows(session), job_id)
    if summary is None:
        return None
    return JobProgress(summary, processed_count(session, job_id, timeout_ms=timeout_ms))


def live_progress(
    session: Session, summaries: Sequence[JobSummary] | None = None, *, timeout_ms: int = COUNT_TIMEOUT_MS
) -> list[JobProgress]:
    """Running and paused jobs, newest first, each with its processed count; ``summaries``: those jobs as the
    caller already read them (``DatabaseStatus.reprocess_jobs``), else they are read here."""
    if summaries is None:
        summaries = job_summaries(session_rows(session), live_only=True)
    return [JobProgress(summary, processed_count(session, summary.id, timeout_ms=timeout_ms)) for summary in summaries]
