"""Gauges read at scrape time: queue depth per queue and priority, workers online per queue, event-bridge lag,
the active model version and reprocess jobs, so a Prometheus/Grafana user sees what `landmarks status` shows
without the CLI.

The counters in :mod:`workers.metrics` are written by the worker processes; these gauges are not anybody's to
write, so a collector reads Redis (queues, and the workers' heartbeats: :mod:`workers.broker`) and PostgreSQL on
each scrape. A part that does not answer reads ``landmarks_up{part=...} 0`` and its gauges are left out, rather
than failing the scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.ops.status import BridgeLag, ModelSummary

if TYPE_CHECKING:
    from shared.ops.job_progress import JobProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetState:
    """One reading; None where that part did not answer."""

    queues: dict[str, dict[int, int]] | None  # queue -> priority step -> messages waiting
    workers: dict[str, list[str]] | None  # queue -> worker nodes consuming it
    bridges: list[BridgeLag] | None
    model: ModelSummary | None
    database_up: bool
    jobs_by_state: dict[str, int] | None = None  # reprocess jobs per state
    jobs: list[JobProgress] | None = None  # running and paused reprocess jobs


class FleetCollector(Collector):
    """A prometheus-client collector over ``read()`` (called once per scrape)."""

    def __init__(self, read: Callable[[], FleetState]) -> None:
        self._read = read

    def describe(self) -> list:
        return []  # no reading at registration: the broker may be down when the endpoint starts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._read()
        up = GaugeMetricFamily("landmarks_up", "Whether a part answered this scrape (1) or not (0)", labels=["part"])
        up.add_metric(["broker"], float(state.queues is not None))
        up.add_metric(["workers"], float(state.workers is not None))
        up.add_metric(["database"], float(state.database_up))
        yield up
        if state.queues is not None:
            depth = GaugeMetricFamily(
                "landmarks_queue_depth", "Messages waiting in a queue, by priority step (0 is served first)",
                labels=["queue", "priority"],
            )  # fmt: skip
            for queue, by_priority in state.queues.items():
                for priority, count in sorted(by_priority.items()):
                    depth.add_metric([queue, str(priority)], float(count))
            yield depth
        if state.workers is not None:
            online = GaugeMetricFamily(
                "landmarks_workers_online",
                "Worker nodes with a live heartbeat, per queue they consume",
                labels=["queue"],
            )
            for queue, nodes in state.workers.items():
                online.add_metric([queue], float(len(nodes)))
            yield online
        if state.bridges is not None:
            yield from _bridge_families(state.bridges)
        if state.database_up:
            model = GaugeMetricFamily(
                "landmarks_model_active_info", "The active model version (value 1; none: no series)",
                labels=["version", "backbone"],
            )  # fmt: skip
            if state.model is not None:
                model.add_metric([state.model.version, state.model.backbone], 1.0)
            yield model
        if state.jobs_by_state is not None:
            by_state = GaugeMetricFamily("landmarks_reprocess_jobs", "Reprocess jobs, by state", labels=["state"])
            for name, count in state.jobs_by_state.items():
                by_state.add_metric([name], float(count))
            yield by_state
        if state.jobs is not None:
            yield from _job_families(state.jobs)


def _bridge_families(bridges: Sequence[BridgeLag]) -> Iterator[GaugeMetricFamily]:
    lag = GaugeMetricFamily(
        "landmarks_bridge_lag_seconds",
        "How long uploads may have waited unseen by a stream-following bridge: 0 while it follows or is idle, "
        "the time since its last heartbeat once it stalled",
        labels=["source"],
    )
    idle = GaugeMetricFamily(
        "landmarks_bridge_idle", "1 when the bridge is connected and no event came for a while", labels=["source"]
    )
    heartbeat = GaugeMetricFamily(
        "landmarks_bridge_heartbeat_age_seconds", "Seconds since the bridge last saved its cursor", labels=["source"]
    )
    event_age = GaugeMetricFamily(
        "landmarks_bridge_last_event_age_seconds", "Age of the last event the bridge handled", labels=["source"]
    )
    for bridge in bridges:
        lag.add_metric([bridge.name], bridge.lag_s)
        idle.add_metric([bridge.name], float(bridge.idle))
        heartbeat.add_metric([bridge.name], bridge.seconds_since_update)
        if bridge.event_age_s is not None:
            event_age.add_metric([bridge.name], bridge.event_age_s)
    yield from (lag, idle, heartbeat, event_age)


def _job_families(jobs: Sequence[JobProgress]) -> Iterator[GaugeMetricFamily]:
    labels = ["job", "state"]
    selected = GaugeMetricFamily(
        "landmarks_reprocess_job_selected_photos", "Photos a live reprocess job selected when it was created",
        labels=labels,
    )  # fmt: skip
    sent = GaugeMetricFamily(
        "landmarks_reprocess_job_sent_photos",
        "Photos a live reprocess job has put on the recognize queue",
        labels=labels,
    )
    processed = GaugeMetricFamily(
        "landmarks_reprocess_job_processed_photos",
        "Photos of a live reprocess job finished since it began (an upper estimate; left out when counting timed out)",
        labels=labels,
    )
    remaining = GaugeMetricFamily(
        "landmarks_reprocess_job_remaining_photos", "Photos of a live reprocess job not processed yet", labels=labels
    )
    for progress in jobs:
        job = [str(progress.job.id), progress.job.state]
        if progress.job.total is not None:
            selected.add_metric(job, float(progress.job.total))
        sent.add_metric(job, float(progress.job.enqueued))
        if progress.processed is not None:
            processed.add_metric(job, float(progress.processed))
        if progress.remaining is not None:
            remaining.add_metric(job, float(progress.remaining))
    yield from (selected, sent, processed, remaining)


def fleet_reader() -> Callable[[], FleetState]:
    """``read()`` over the settings' broker and database (the entry points' clients)."""
    from shared.ops.job_progress import jobs_by_state, live_progress
    from shared.ops.status import database_status, session_rows
    from shared.settings import get_settings
    from workers import broker
    from workers.queues import PRIORITY_STEPS, QUEUES
    from workers.runtime import db_session

    broker_url = get_settings().broker_url

    def read() -> FleetState:
        queues = workers = bridges = model = by_state = jobs = None
        database_up = False
        try:
            with broker.connect(broker_url) as client:
                queues = {d.name: d.by_priority for d in broker.queue_depths(client, QUEUES, PRIORITY_STEPS)}
                workers = broker.workers_online(client, QUEUES)
        except Exception as exc:  # a scrape reports the broker down instead of failing
            log.warning("metrics: broker unreadable: %s", broker.unavailable(broker_url, exc))
        try:
            with db_session() as session:
                status = database_status(session_rows(session))
                bridges, model, database_up = status.bridge, status.model, True
                by_state, jobs = jobs_by_state(session), live_progress(session, status.reprocess_jobs)
        except Exception as exc:
            log.warning("metrics: database unreadable: %s", exc)
        return FleetState(queues, workers, bridges, model, database_up, by_state, jobs)

    return read
