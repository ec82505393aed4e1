"""The operator's view of ``task_failures``: list, show one, and plan a retry.

A retry resolves nothing: the photo goes back to ``pending`` and its failure closes when a later recognition
succeeds (``shared.photos.failures.resolve_failures`` in ``apply_recognition``); if it fails again, the same row counts
another attempt.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from shared.db.models import Photo, PhotoStatus, TaskFailure, User
from shared.ops.reprocess import reset_failed


class FailureNotFound(LookupError):
    pass


@dataclass(frozen=True)
class FailureRow:
    id: int
    photo_id: uuid.UUID | None
    bucket: str | None
    key: str | None
    owner: str | None
    photo_status: str | None
    task_name: str
    task_id: str | None
    reason: str
    error_type: str | None
    summary: str  # the traceback's last line, or the reason when there is none
    attempts: int
    created_at: datetime
    resolved_at: datetime | None
    traceback: str | None = None  # only from get_failure


@dataclass
class RetryPlan:
    """What a retry sends: photos to recognise again, and objects (failures without a photo row) to ingest again."""

    photo_ids: list[uuid.UUID] = field(default_factory=list)
    objects: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (failure id, why)
    reset: int = 0


def traceback_summary(traceback: str | None, reason: str) -> str:
    lines = [line.strip() for line in (traceback or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else reason


def _query() -> Select[tuple]:
    return (
        select(TaskFailure, Photo.bucket, Photo.key, Photo.status, User.name)
        .outerjoin(Photo, Photo.id == TaskFailure.photo_id)
        .outerjoin(User, User.id == Photo.owner_id)
    )


def _row(failure: TaskFailure, bucket: str | None, key: str | None, status: PhotoStatus | None, owner: str | None,
         *, with_traceback: bool = False) -> FailureRow:  # fmt: skip
    return FailureRow(
        id=failure.id,
        photo_id=failure.photo_id,
        bucket=bucket or failure.bucket,
        key=key or failure.key,
        owner=owner,
        photo_status=status.value if status is not None else None,
        task_name=failure.task_name,
        task_id=failure.task_id,
        reason=failure.reason,
        error_type=failure.error_type,
        summary=traceback_summary(failure.traceback, failure.reason),
        attempts=failure.attempts,
        created_at=failure.created_at,
        resolved_at=failure.resolved_at,
        traceback=failure.traceback if with_traceback else None,
    )


def list_failures(
    session: Session, *, since: datetime | None = None, limit: int = 50, include_resolved: bool = False
) -> list[FailureRow]:
    """Newest first; open failures only unless ``include_resolved``."""
    query = _query()
    if not include_resolved:
        query = query.where(TaskFailure.resolved_at.is_(None))
    if since is not None:
        query = query.where(TaskFailure.created_at >= since)
    rows = session.execute(query.order_by(TaskFailure.created_at.desc(), TaskFailure.id.desc()).limit(limit)).all()
    return [_row(*row) for row in rows]


def get_failure(session: Session, failure_id: int) -> FailureRow:
    row = session.execute(_query().where(TaskFailure.id == failure_id)).one_or_none()
    if row is None:
        raise FailureNotFound(f"no failure {failure_id}")
    return _row(*row, with_traceback=True)


def plan_retry(session: Session, failure_ids: Sequence[int] | None) -> RetryPlan:
    """Reset the failed photos of the given open failures (``None``: all open ones) to pending, in this
    transaction; the caller commits, then enqueues ``photo_ids`` and ``objects``."""
    query = select(TaskFailure, Photo).outerjoin(Photo, Photo.id == TaskFailure.photo_id)
    if failure_ids is None:
        query = query.where(TaskFailure.resolved_at.is_(None))
    else:
        query = query.where(TaskFailure.id.in_(list(failure_ids)))
    rows = session.execute(query.order_by(TaskFailure.id)).all()
    plan = RetryPlan()
    found = {failure.id for failure, _ in rows}
    plan.skipped.extend((fid, "no such failure") for fid in failure_ids or () if fid not in found)
    for failure, photo in rows:
        if failure.resolved_at is not None:
            plan.skipped.append((failure.id, "already resolved"))
        elif photo is None and failure.photo_id is None and failure.bucket and failure.key:
            plan.objects.append((failure.bucket, failure.key))
        elif photo is None:
            plan.skipped.append((failure.id, "its photo is gone"))
        elif photo.status == PhotoStatus.deleted:
            plan.skipped.append((failure.id, "its photo was deleted"))
        elif photo.owner_id is None:
            plan.skipped.append((failure.id, "its photo has no owner: upload it again with x-amz-meta-user"))
        elif photo.id not in plan.photo_ids:
            plan.photo_ids.append(photo.id)
    plan.reset = reset_failed(session, plan.photo_ids)
    return plan
