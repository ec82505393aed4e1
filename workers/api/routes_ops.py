"""``/v1/ops``: what operators read over HTTP (reprocess jobs), for operator tokens only; nothing here writes
(`landmarks reprocess pause | resume | cancel` does)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from shared.ops.job_progress import JobProgress, progress
from shared.ops.status import JobSummary, job_summaries, session_rows
from workers.api import schemas
from workers.api.deps import OperatorDep, SessionDep

router = APIRouter(prefix="/v1/ops", tags=["operations"])

MAX_JOBS = 200


def job_out(job: JobSummary, found: JobProgress | None = None) -> schemas.ReprocessJobOut:
    return schemas.ReprocessJobOut(
        id=job.id,
        state=job.state,
        selector=job.selector,
        total=job.total,
        sent=job.enqueued,
        reset=job.reset,
        processed=found.processed if found else None,
        remaining=found.remaining if found else None,
        created_by=job.created_by,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


@router.get("/reprocess-jobs", response_model=list[schemas.ReprocessJobOut], operation_id="list_reprocess_jobs")
def list_reprocess_jobs(
    session: SessionDep,
    _operator: OperatorDep,
    live: Annotated[bool, Query(description="Only running and paused jobs.")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_JOBS)] = 50,
) -> list[schemas.ReprocessJobOut]:
    """Reprocess jobs, newest first, with what each selected and sent (no per-job count: see one job)."""
    return [job_out(job) for job in job_summaries(session_rows(session), live_only=live, limit=limit)]


@router.get("/reprocess-jobs/{job_id}", response_model=schemas.ReprocessJobOut, operation_id="get_reprocess_job")
def get_reprocess_job(job_id: int, session: SessionDep, _operator: OperatorDep) -> schemas.ReprocessJobOut:
    """One reprocess job with its photos processed since it began and those remaining."""
    found = progress(session, job_id)
    if found is None:
        raise HTTPException(404, f"no reprocess job {job_id}")
    return job_out(found.job, found)
