"""The database half of ``landmarks status``: photos by status, recent failures, the active model, bridge lag.

Times are the database's (``now()``), so lag does not depend on the operator machine's clock. A connected bridge
saves its cursor at least every heartbeat (``workers.bridge.subscriber``), so a cursor that stopped moving means
a stopped or disconnected bridge, while an old last event with a fresh heartbeat only means nobody uploaded.
Photo counts are exact on small tables and the planner's estimates (reltuples x the status column's most-common
frequencies, kept fresh by autovacuum's ANALYZE) on large ones, shown with "about": an exact GROUP BY scans every
row. The queries are plain SQL over a ``Rows`` callable, so the same code runs on a bare psycopg2 connection
(`landmarks status`) and in a SQLAlchemy session (/metrics, the API); the models' table and column names are
checked by tests/unit/test_status_sql.py and by the integration tests that run both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.db.enums import JobState, ModelStatus, PhotoStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Runs one SQL statement (DB-API "pyformat" parameters, ``%(name)s``) and returns its rows. The queries are plain
#: SQL so that `landmarks status` can run them on a bare psycopg2 connection: SQLAlchemy and the models were half
#: of its start-up time (issue 21). ``session_rows`` runs them in a SQLAlchemy session's transaction instead.
Rows = Callable[[str, Mapping[str, Any] | None], Sequence[Sequence[Any]]]

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
class JobSummary:
    """A reprocess job as status, /metrics and the API show it (the row's own columns: no count query)."""

    id: int
    state: str
    enqueued: int
    total: int | None
    reset: int
    selector: dict[str, Any]
    created_by: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class DatabaseStatus:
    now: datetime
    photos: dict[str, int]  # every PhotoStatus, zeros included
    photos_approximate: bool  # the planner's estimates (a large table), not a count
    failures_last_hour: int
    open_failures: int
    model: ModelSummary | None
    bridge: list[BridgeLag]
    reprocess_jobs: list[JobSummary]  # running and paused, newest first


def session_rows(session: Session) -> Rows:
    """``Rows`` in ``session``'s transaction (its connection's DB-API cursor: SQLAlchemy's events see them)."""
    connection = session.connection()

    def rows(sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
        return connection.exec_driver_sql(sql, dict(params) if params else ()).all()

    return rows


def cursor_rows(connection: Any) -> Rows:
    """``Rows`` on a DB-API connection (psycopg2's)."""

    def rows(sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    return rows


#: Below this many rows (the planner's estimate) photos are counted exactly.
EXACT_BELOW = 200_000

ESTIMATE = """
    SELECT c.reltuples, s.most_common_vals::text::text[] AS vals, s.most_common_freqs AS freqs
    FROM pg_class c
    LEFT JOIN pg_stats s
      ON s.schemaname = c.relnamespace::regnamespace::text AND s.tablename = c.relname AND s.attname = 'status'
    WHERE c.oid = to_regclass('photos')
"""


def photo_counts(rows: Rows, *, exact_below: int = EXACT_BELOW) -> tuple[dict[str, int], bool]:
    """Photos by status, and whether the figures are estimates (O(1): two catalogue rows) or exact counts."""
    counts = dict.fromkeys((s.value for s in PhotoStatus), 0)
    found = rows(ESTIMATE, None)
    if found:
        reltuples, values, freqs = found[0]
        if values is not None and reltuples >= exact_below:
            for value, freq in zip(values, freqs, strict=True):
                if value in counts:
                    counts[value] = round(reltuples * freq)
            return counts, True
    for status, count in rows("SELECT status, count(*) FROM photos GROUP BY status", None):
        counts[str(status)] = int(count)
    return counts, False


def bridge_lag(rows: Rows, now: datetime) -> list[BridgeLag]:
    lags = []
    for name, position, updated_at in rows("SELECT name, position, updated_at FROM event_cursors ORDER BY name", None):
        # A position after 2001-09-09 in ns (> 1e18) is a timestamp; anything smaller is an opaque offset.
        event_age = now.timestamp() - position / NS_PER_S if position > 10**18 else None
        event_age = max(0.0, event_age) if event_age is not None else None
        since_update = max(0.0, (now - updated_at).total_seconds())
        state, lag = bridge_state(since_update, event_age)
        lags.append(
            BridgeLag(
                name=name,
                position=position,
                updated_at=updated_at,
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


def active_model(rows: Rows) -> ModelSummary | None:
    """The active version (``shared.versions.registry.active_version``: at most one row has that status)."""
    found = rows(
        "SELECT id, version, backbone, activated_at, metrics FROM model_versions WHERE status = %(active)s",
        {"active": ModelStatus.active.value},
    )
    if not found:
        return None
    id_, version, backbone, activated_at, metrics = found[0]
    return ModelSummary(id=id_, version=version, backbone=backbone, activated_at=activated_at,
                        metrics=dict(metrics or {}))  # fmt: skip


JOB_COLUMNS = "id, state, enqueued, total, reset, selector, created_by, created_at, finished_at"


def job_summaries(rows: Rows, *, live_only: bool = False, limit: int = 50) -> list[JobSummary]:
    """Reprocess jobs, newest first (``live_only``: running and paused)."""
    where = "WHERE state IN (%(running)s, %(paused)s)" if live_only else ""
    found = rows(
        f"SELECT {JOB_COLUMNS} FROM reprocess_jobs {where} ORDER BY id DESC LIMIT %(limit)s",
        {"running": JobState.running.value, "paused": JobState.paused.value, "limit": limit},
    )
    return [_job(row) for row in found]


def job_summary(rows: Rows, job_id: int) -> JobSummary | None:
    found = rows(f"SELECT {JOB_COLUMNS} FROM reprocess_jobs WHERE id = %(id)s", {"id": job_id})
    return _job(found[0]) if found else None


def _job(row: Sequence[Any]) -> JobSummary:
    id_, state, enqueued, total, reset, selector, created_by, created_at, finished_at = row
    return JobSummary(id=id_, state=str(state), enqueued=int(enqueued), total=total, reset=int(reset),
                      selector=dict(selector or {}), created_by=created_by, created_at=created_at,
                      finished_at=finished_at)  # fmt: skip


def database_status(rows: Rows, *, window: timedelta = timedelta(hours=1)) -> DatabaseStatus:
    """Everything `landmarks status` reads from PostgreSQL: a few indexed or catalogue queries, in one transaction
    (the caller's)."""
    [(now,)] = rows("SELECT now()", None)
    [(recent,)] = rows("SELECT count(*) FROM task_failures WHERE created_at >= %(since)s", {"since": now - window})
    [(open_count,)] = rows("SELECT count(*) FROM task_failures WHERE resolved_at IS NULL", None)
    counts, approximate = photo_counts(rows)
    return DatabaseStatus(
        now=now,
        photos=counts,
        photos_approximate=approximate,
        failures_last_hour=int(recent),
        open_failures=int(open_count),
        model=active_model(rows),
        bridge=bridge_lag(rows, now),
        reprocess_jobs=job_summaries(rows, live_only=True),
    )
