"""Gauges read at scrape time: queue depth per queue and priority, workers online per queue, event-bridge lag and
the active model version, so a Prometheus/Grafana user sees what `landmarks status` shows without the CLI.

The counters in :mod:`workers.metrics` are written by the worker processes; these gauges are not anybody's to
write, so a collector asks Redis, the workers (a Celery ping) and PostgreSQL on each scrape. A part that does not
answer reads ``landmarks_up{part=...} 0`` and its gauges are left out, rather than failing the scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.ops.status import BridgeLag, ModelSummary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetState:
    """One reading; None where that part did not answer."""

    queues: dict[str, dict[int, int]] | None  # queue -> priority step -> messages waiting
    workers: dict[str, list[str]] | None  # queue -> worker nodes consuming it
    bridges: list[BridgeLag] | None
    model: ModelSummary | None
    database_up: bool


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
                "Worker nodes that answered a ping, per queue they consume",
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


def fleet_reader(ping_timeout: float = 1.0) -> Callable[[], FleetState]:
    """``read()`` over the settings' broker and database (the entry points' clients)."""
    from shared.ops.status import database_status, session_rows
    from workers.celery_app import QUEUES, app
    from workers.fleet import queue_depths, workers_by_queue
    from workers.runtime import db_session

    def read() -> FleetState:
        queues = workers = bridges = model = None
        database_up = False
        try:
            queues = {d.name: d.by_priority for d in queue_depths(app, QUEUES)}
        except Exception as exc:  # a scrape reports the broker down instead of failing
            log.warning("metrics: broker unreadable: %s", exc)
        if queues is not None:
            try:
                workers = workers_by_queue(app, QUEUES, timeout=ping_timeout)
            except Exception as exc:
                log.warning("metrics: workers did not answer: %s", exc)
        try:
            with db_session() as session:
                status = database_status(session_rows(session))
            bridges, model, database_up = status.bridge, status.model, True
        except Exception as exc:
            log.warning("metrics: database unreadable: %s", exc)
        return FleetState(queues, workers, bridges, model, database_up)

    return read
