"""`landmarks status` reads PostgreSQL with plain SQL (no models loaded): the SQL names the models' tables and
columns, and the answers become the same summaries the ORM gave."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.db.models import Base
from shared.ops import status

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class Answers:
    """PostgreSQL's answers by the start of each statement (what a Rows callable returns)."""

    def __init__(self, table: dict[str, list[tuple[Any, ...]]]) -> None:
        self.table, self.asked = table, []

    def __call__(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        self.asked.append((sql, params))
        for start, rows in self.table.items():
            if sql.strip().startswith(start):
                return rows
        raise AssertionError(f"unexpected SQL: {sql}")


def _answers(estimate: list[tuple[Any, ...]]) -> Answers:
    job = (7, "running", 500, 2000, 3, {"all": True}, "ops@h", NOW, None)
    return Answers({
        "SELECT now()": [(NOW,)],
        "SELECT count(*) FROM task_failures WHERE created_at": [(2,)],
        "SELECT count(*) FROM task_failures WHERE resolved_at": [(5,)],
        "SELECT c.reltuples": estimate,
        "SELECT status, count(*)": [("done", 3), ("failed", 1)],
        "SELECT id, version, backbone": [(4, "v0004", "efficientnet_lite2", NOW, {"top1": 0.9})],
        "SELECT name, position": [("seaweedfs", int((NOW - timedelta(seconds=5)).timestamp() * 1e9), NOW)],
        f"SELECT {status.JOB_COLUMNS}": [job],
    })  # fmt: skip


def test_a_small_table_is_counted_and_everything_summarised() -> None:
    answers = _answers([(1000.0, ["done"], [1.0])])  # the planner knows 1,000 rows: below the threshold
    db = status.database_status(answers)
    assert db.now == NOW and db.failures_last_hour == 2 and db.open_failures == 5
    assert db.photos == {"pending": 0, "processing": 0, "done": 3, "failed": 1, "deleted": 0}
    assert db.photos_approximate is False
    assert db.model == status.ModelSummary(4, "v0004", "efficientnet_lite2", NOW, {"top1": 0.9})
    [bridge] = db.bridge
    assert bridge.name == "seaweedfs" and bridge.state == "following" and bridge.event_age_s == pytest.approx(5, 0.01)
    [job] = db.reprocess_jobs
    assert (job.id, job.state, job.enqueued, job.total, job.reset) == (7, "running", 500, 2000, 3)
    since = next(params for sql, params in answers.asked if "created_at >=" in sql)
    assert since == {"since": NOW - timedelta(hours=1)}  # the database's clock, not this machine's


def test_a_large_table_reads_the_planners_estimates_without_counting() -> None:
    answers = _answers([(1e7, ["done", "pending"], [0.9, 0.1])])
    counts, about = status.photo_counts(answers)
    assert about and counts["done"] == 9_000_000 and counts["pending"] == 1_000_000
    assert not any("GROUP BY" in sql for sql, _ in answers.asked)


KEYWORDS = {"select", "from", "where", "count", "now", "order", "by", "desc", "limit", "in", "is", "not", "null",
            "group", "and"}  # fmt: skip


def test_every_table_and_column_the_sql_names_is_the_models() -> None:
    answers = _answers([(1000.0, ["done"], [1.0])])
    status.database_status(answers)
    status.job_summaries(answers)
    status.job_summary(answers, 7)
    tables = Base.metadata.tables
    checked = 0
    for sql, _ in answers.asked:
        found = re.search(r"FROM (\w+)", sql)
        if found is None or found[1] == "pg_class":
            continue  # now(), or the catalogue
        table = found[1]
        assert table in tables, sql
        words = set(re.findall(r"[a-z_]+", re.sub(r"%\(\w+\)s", "", sql))) - KEYWORDS - {table}
        assert words <= {c.name for c in tables[table].columns}, (sql, words)
        checked += 1
    assert checked == 8
