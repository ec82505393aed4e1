"""Recording permanent failures: once per photo, with the reason an operator reads in `landmarks failures`."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db.models import Photo, PhotoStatus, TaskFailure


def record_failure(
    session: Session,
    *,
    task_name: str,
    reason: str,
    message: str,
    photo_id: uuid.UUID | None = None,
    bucket: str | None = None,
    key: str | None = None,
    task_id: str | None = None,
    error_type: str | None = None,
    traceback: str | None = None,
) -> TaskFailure:
    """Mark the photo failed and keep one open failure row per photo (a repeat bumps ``attempts``)."""
    text = f"{reason}: {message}"
    if photo_id is not None:
        session.execute(update(Photo).where(Photo.id == photo_id).values(status=PhotoStatus.failed, error=text[:4000]))
        existing = session.execute(
            select(TaskFailure)
            .where(TaskFailure.photo_id == photo_id, TaskFailure.resolved_at.is_(None))
            .with_for_update()
        ).scalar_one_or_none()
        if existing is not None:
            existing.attempts += 1
            existing.reason = text
            existing.task_name = task_name
            existing.task_id = task_id
            existing.error_type = error_type
            existing.traceback = traceback
            return existing
    failure = TaskFailure(
        photo_id=photo_id,
        bucket=bucket,
        key=key,
        task_name=task_name,
        task_id=task_id,
        reason=text,
        error_type=error_type,
        traceback=traceback,
    )
    session.add(failure)
    session.flush()
    return failure


def record_failure_if_current(
    session: Session,
    *,
    photo_id: uuid.UUID,
    etag: str | None,
    task_name: str,
    reason: str,
    message: str,
    task_id: str | None = None,
    error_type: str | None = None,
    traceback: str | None = None,
) -> TaskFailure | None:
    """Record a recognition's failure only while the photo still holds the content (``etag``) it was computed for.

    A failure of replaced content (a new version uploaded under the key meanwhile) or of a deleted photo arrives
    late and would hide the live version for good, so it is dropped (None); the row is locked while checking.
    """
    photo = session.get(Photo, photo_id, with_for_update=True)
    if photo is None or photo.status == PhotoStatus.deleted or photo.etag != etag:
        return None
    return record_failure(
        session,
        task_name=task_name,
        reason=reason,
        message=message,
        photo_id=photo_id,
        task_id=task_id,
        error_type=error_type,
        traceback=traceback,
    )


def record_time_limit(
    session: Session,
    *,
    task_name: str,
    task_id: str | None,
    soft_limit_s: float | None,
    photo_id: uuid.UUID | None = None,
) -> TaskFailure:
    """A task ran past its soft time limit: fail its photo (unless deleted meanwhile) or record the task alone."""
    if photo_id is not None:
        photo = session.get(Photo, photo_id, with_for_update=True)
        if photo is None or photo.status == PhotoStatus.deleted:
            photo_id = None
    return record_failure(
        session,
        task_name=task_name,
        task_id=task_id,
        reason="time_limit",
        message=f"{task_name} ran past its soft time limit of {soft_limit_s} s",
        photo_id=photo_id,
        error_type="SoftTimeLimitExceeded",
    )


def resolve_failures(session: Session, photo_id: uuid.UUID) -> int:
    """Close the photo's open failures once it was processed successfully."""
    result = session.execute(
        update(TaskFailure)
        .where(TaskFailure.photo_id == photo_id, TaskFailure.resolved_at.is_(None))
        .values(resolved_at=func.now())
    )
    return result.rowcount or 0
