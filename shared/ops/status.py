"""The database half of ``landmarks status``: photos by status, recent failures, the active model, bridge lag.

Times are the database's (``now()``), so lag does not depend on the operator machine's clock. A connected bridge
saves its cursor at least every heartbeat (``workers.bridge.subscriber``), so a cursor that stopped moving means
a stopped or disconnected bridge, while an old last event with a fresh heartbeat only means nobody uploaded.
Photo counts are
exact on small tables and the planner's estimates (reltuples x the status column's most-common frequencies, kept
fresh by autovacuum's ANALYZE) on large ones, shown with "about": an exact GROUP BY scans every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shared.db.models import EventCursor, Photo, PhotoStatus, TaskFailure
from shared.versions.registry import active_version

NS_PER_S = 1_000_000_000
# The bridge saves its cursor at least every 30 s while connected; three beats missed: it is not following.
STALLED_AFTER_S = 90.0
# A last event older than this, with a fresh heartbeat, is an idle stream (no uploads), not lag.
IDLE_AFTER_S = 60.0


@dataclass(frozen=True)
class BridgeLag:
    """One event source's cursor: when it last moved, and how old the last event it processed was."""

    name: str
    position: int
    updated_at: datetime
    seconds_since_update: float  # since the last save: an event handled or a heartbeat
    event_age_s: float | None  # positions are ns since the epoch (SeaweedFS); None when it is not a time
    state: str = "following"  # following | idle (connected, no events) | stalled (no heartbeat: stopped)
    lag_s: float = 0.0  # how long events may have waited unseen: 0 unless stalled

    @property
    def idle(self) -> bool:
        return self.state == "idle"


@dataclass(frozen=True)
class ModelSummary:
    id: int
    version: str
    backbone: str
    activated_at: datetime | None
    metrics: dict[str, Any]


@dataclass(frozen=True)
class DatabaseStatus:
    now: datetime
    photos: dict[str, int]  # every PhotoStatus, zeros included
    photos_approximate: bool  # the planner's estimates (a large table), not a count
    failures_last_hour: int
    open_failures: int
    model: ModelSummary | None
    bridge: list[BridgeLag]


#: Below this many rows (the planner's estimate) photos are counted exactly.
EXACT_BELOW = 200_000

ESTIMATE = text(
    """
    SELECT c.reltuples, s.most_common_vals::text::text[] AS vals, s.most_common_freqs AS freqs
    FROM pg_class c
    LEFT JOIN pg_stats s
      ON s.schemaname = c.relnamespace::regnamespace::text AND s.tablename = c.relname AND s.attname = 'status'
    WHERE c.oid = to_regclass('photos')
    """
)


def photo_counts(session: Session, *, exact_below: int = EXACT_BELOW) -> tuple[dict[str, int], bool]:
    """Photos by status, and whether the figures are estimates (O(1): two catalogue rows) or exact counts."""
    counts = dict.fromkeys((s.value for s in PhotoStatus), 0)
    estimate = session.execute(ESTIMATE).one_or_none()
    if estimate is not None and estimate.vals is not None and estimate.reltuples >= exact_below:
        for value, freq in zip(estimate.vals, estimate.freqs, strict=True):
            if value in counts:
                counts[value] = round(estimate.reltuples * freq)
        return counts, True
    for status, count in session.execute(select(Photo.status, func.count()).group_by(Photo.status)).all():
        counts[status.value] = count
    return counts, False


def bridge_lag(session: Session, now: datetime) -> list[BridgeLag]:
    lags = []
    for cursor in session.execute(select(EventCursor).order_by(EventCursor.name)).scalars():
        # A position after 2001-09-09 in ns (> 1e18) is a timestamp; anything smaller is an opaque offset.
        event_age = now.timestamp() - cursor.position / NS_PER_S if cursor.position > 10**18 else None
        event_age = max(0.0, event_age) if event_age is not None else None
        since_update = max(0.0, (now - cursor.updated_at).total_seconds())
        state, lag = bridge_state(since_update, event_age)
        lags.append(
            BridgeLag(
                name=cursor.name,
                position=cursor.position,
                updated_at=cursor.updated_at,
                seconds_since_update=since_update,
                event_age_s=event_age,
                state=state,
                lag_s=lag,
            )
        )
    return lags


def bridge_state(seconds_since_update: float, event_age_s: float | None) -> tuple[str, float]:
    """(state, lag in seconds) of a cursor: stalled when no heartbeat came for ``STALLED_AFTER_S`` (everything
    uploaded since its last save may be waiting), idle when connected with an old last event, else following."""
    if seconds_since_update > STALLED_AFTER_S:
        return "stalled", seconds_since_update
    if (event_age_s if event_age_s is not None else seconds_since_update) > IDLE_AFTER_S:
        return "idle", 0.0
    return "following", 0.0


def database_status(session: Session, *, window: timedelta = timedelta(hours=1)) -> DatabaseStatus:
    now = session.execute(select(func.now())).scalar_one()
    recent = session.execute(
        select(func.count()).select_from(TaskFailure).where(TaskFailure.created_at >= now - window)
    ).scalar_one()
    open_count = session.execute(
        select(func.count()).select_from(TaskFailure).where(TaskFailure.resolved_at.is_(None))
    ).scalar_one()
    active = active_version(session)
    model = (
        ModelSummary(
            id=active.id,
            version=active.version,
            backbone=active.backbone,
            activated_at=active.activated_at,
            metrics=dict(active.metrics or {}),
        )
        if active is not None
        else None
    )
    counts, approximate = photo_counts(session)
    return DatabaseStatus(
        now=now,
        photos=counts,
        photos_approximate=approximate,
        failures_last_hour=recent,
        open_failures=open_count,
        model=model,
        bridge=bridge_lag(session, now),
    )
