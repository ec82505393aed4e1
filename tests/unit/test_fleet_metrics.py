"""The scrape-time gauges: what a Prometheus user reads instead of `landmarks status`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shared.ops.status import IDLE_AFTER_S, STALLED_AFTER_S, BridgeLag, ModelSummary, bridge_state
from workers.fleet_metrics import FleetCollector, FleetState

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def _bridge(name: str, since_update: float, event_age: float | None) -> BridgeLag:
    state, lag = bridge_state(since_update, event_age)
    return BridgeLag(name, 1, NOW, since_update, event_age, state, lag)


def _scrape(state: FleetState) -> str:
    registry = CollectorRegistry()
    registry.register(FleetCollector(lambda: state))
    return generate_latest(registry).decode()


@pytest.mark.parametrize(
    ("since_update", "event_age", "expected"),
    [
        (5.0, 2.0, ("following", 0.0)),
        (5.0, 3600.0, ("idle", 0.0)),  # connected (fresh heartbeat), nobody uploaded: not lag
        (STALLED_AFTER_S + 30, 3600.0, ("stalled", STALLED_AFTER_S + 30)),  # no heartbeat: uploads may wait
        (IDLE_AFTER_S + 1, None, ("idle", 0.0)),  # an opaque position: the heartbeat alone
    ],
)
def test_bridge_state_tells_idle_from_stalled(since_update: float, event_age: float | None, expected) -> None:
    assert bridge_state(since_update, event_age) == expected


def test_every_part_answering() -> None:
    state = FleetState(
        queues={"recognize": {0: 3, 9: 120}, "ingest": {0: 0, 9: 0}},
        workers={"recognize": ["cpu1@h", "gpu1@h"], "ingest": []},
        bridges=[_bridge("seaweedfs:filer", 4.0, 3600.0), _bridge("old", 400.0, 500.0)],
        model=ModelSummary(7, "v0007-20260501", "efficientnet_lite2", NOW, {}),
        database_up=True,
    )

    text = _scrape(state)

    assert 'landmarks_queue_depth{priority="0",queue="recognize"} 3.0' in text
    assert 'landmarks_queue_depth{priority="9",queue="recognize"} 120.0' in text
    assert 'landmarks_workers_online{queue="recognize"} 2.0' in text
    assert 'landmarks_workers_online{queue="ingest"} 0.0' in text
    assert 'landmarks_bridge_idle{source="seaweedfs:filer"} 1.0' in text
    assert 'landmarks_bridge_lag_seconds{source="seaweedfs:filer"} 0.0' in text
    assert 'landmarks_bridge_lag_seconds{source="old"} 400.0' in text
    assert 'landmarks_bridge_heartbeat_age_seconds{source="old"} 400.0' in text
    assert 'landmarks_bridge_last_event_age_seconds{source="seaweedfs:filer"} 3600.0' in text
    assert 'landmarks_model_active_info{backbone="efficientnet_lite2",version="v0007-20260501"} 1.0' in text
    assert all(f'landmarks_up{{part="{part}"}} 1.0' in text for part in ("broker", "workers", "database"))


def test_a_part_that_does_not_answer_reads_down_and_the_rest_still_shows() -> None:
    state = FleetState(queues=None, workers=None, bridges=[], model=None, database_up=True)

    text = _scrape(state)

    assert 'landmarks_up{part="broker"} 0.0' in text and 'landmarks_up{part="database"} 1.0' in text
    assert "landmarks_queue_depth{" not in text and "landmarks_workers_online{" not in text
    assert "landmarks_model_active_info{" not in text  # no active version: no series


def _job(job_id: int, state: str, total: int | None, sent: int, processed: int | None):
    from shared.ops.job_progress import JobProgress
    from shared.ops.status import JobSummary

    summary = JobSummary(job_id, state, sent, total, 0, {"all": True}, "ops@h", NOW, None)
    return JobProgress(summary, processed)


def test_reprocess_jobs_per_state_and_the_progress_of_live_ones() -> None:
    state = FleetState(
        queues=None, workers=None, bridges=None, model=None, database_up=True,
        jobs_by_state={"running": 1, "paused": 1, "cancelled": 0, "finished": 3},
        jobs=[_job(7, "running", 20_000, 5_000, 1_200), _job(6, "paused", 900, 500, None)],
    )  # fmt: skip

    text = _scrape(state)

    assert 'landmarks_reprocess_jobs{state="running"} 1.0' in text
    assert 'landmarks_reprocess_jobs{state="finished"} 3.0' in text
    assert 'landmarks_reprocess_job_selected_photos{job="7",state="running"} 20000.0' in text
    assert 'landmarks_reprocess_job_sent_photos{job="7",state="running"} 5000.0' in text
    assert 'landmarks_reprocess_job_processed_photos{job="7",state="running"} 1200.0' in text
    assert 'landmarks_reprocess_job_remaining_photos{job="7",state="running"} 18800.0' in text
    # job 6's count timed out: its sent and selected figures stay, processed and remaining are left out
    assert 'landmarks_reprocess_job_sent_photos{job="6",state="paused"} 500.0' in text
    assert 'job="6"' not in "".join(line for line in text.splitlines() if "processed_photos{" in line)
    assert 'landmarks_reprocess_job_remaining_photos{job="6"' not in text


def test_no_job_gauges_when_the_database_did_not_answer() -> None:
    text = _scrape(FleetState(None, None, None, None, False))
    assert "landmarks_reprocess" not in text
