"""The Grafana dashboard in deploy/grafana queries only metrics the code exports, and shows what operators need."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Metric

from shared.ops.job_progress import JobProgress
from shared.ops.status import BridgeLag, JobSummary, ModelSummary
from workers.fleet_metrics import FleetCollector, FleetState
from workers.metrics import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "landmarks-fleet.json"
METRIC_NAME = re.compile(r"\blandmarks_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}


def _series(families: list[Metric]) -> set[str]:
    """The series names Prometheus stores for these families (a counter ``x`` is scraped as ``x_total``)."""
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def exported() -> set[str]:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    everything = FleetState(
        queues={"recognize": {0: 1}},
        workers={"recognize": ["w@h"]},
        bridges=[BridgeLag("seaweedfs", 1, now, 1.0, 1.0)],
        model=ModelSummary(1, "v1", "efficientnet_lite2", now, {}),
        database_up=True,
        jobs_by_state={"running": 1},
        jobs=[JobProgress(JobSummary(1, "running", 10, 100, 0, {"all": True}, None, now, None), 5)],
    )
    registry = CollectorRegistry()
    registry.register(FleetCollector(lambda: everything))
    return _series(list(metrics().registry.collect())) | _series(list(registry.collect()))


def queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_query_names_a_metric_the_code_exports() -> None:
    known = exported()
    assert {"landmarks_queue_depth", "landmarks_tasks_total", "landmarks_recognition_latency_seconds_bucket"} <= known
    for title, expr in queries():
        names = set(METRIC_NAME.findall(expr))
        assert names, f"{title!r}: {expr!r} names no landmarks metric"
        assert names <= known, f"{title!r} queries {sorted(names - known)}, which nothing exports"


def test_the_dashboard_shows_what_operators_asked_for() -> None:
    by_title = {title: expr for title, expr in queries()}
    assert "landmarks_object_events_total" in by_title["Uploads / s"]
    latency = [expr for title, expr in queries() if title == "Recognition latency"]
    assert any("histogram_quantile(0.5," in e for e in latency) and any(
        "histogram_quantile(0.95," in e for e in latency
    )
    assert "landmarks_queue_depth" in by_title["Queue depth"]
    assert "by (reason)" in by_title["Failures by reason"]
    assert "landmarks_album_writes_total" in by_title["Albums written / s"]
    reprocess = [expr for title, expr in queries() if title == "Reprocess jobs"]
    assert (
        "landmarks_reprocess_job_remaining_photos" in reprocess
        and "landmarks_reprocess_jobs" in by_title["Reprocess jobs by state"]
    )
    dashboard = json.loads(DASHBOARD.read_text())
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])  # picked on import
