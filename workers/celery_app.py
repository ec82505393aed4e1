"""The Celery application: broker, queues, routing by task-name prefix, reliability settings.

Workers start with ``celery -A workers.celery_app worker -Q <queue>``; one queue per kind of work so the
low-priority ``cleaning`` and ``training`` queues never delay uploads.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from shared.settings import Settings, get_settings
from tasks.limits import TimeLimits
from workers import signals  # noqa: F401  (connects logging, task context and metrics handlers)
from workers.heartbeat import Heartbeat
from workers.metrics import metrics_dir
from workers.queues import LIVE_PRIORITY, PRIORITY_STEPS, QUEUES, REPROCESS_PRIORITY

__all__ = ["LIVE_PRIORITY", "PRIORITY_STEPS", "QUEUES", "REPROCESS_PRIORITY", "app", "make_celery"]

TASK_ROUTES = {
    "ingest.*": {"queue": "ingest"},
    "recognition.*": {"queue": "recognize"},
    "albums.*": {"queue": "albums"},
    "cleaning.*": {"queue": "cleaning"},
    "training.*": {"queue": "training"},
}


# Warm shutdown (SIGTERM) lets running tasks finish. A cold one (SIGQUIT, a second Ctrl+C, or SIGTERM with
# REMAP_SIGTERM=SIGQUIT for orchestrators with a short grace period) first waits this long (a "soft" shutdown),
# then cancels what still runs; acks late + reject on worker lost return those messages to Redis.
SOFT_SHUTDOWN_TIMEOUT_S = 30.0

TASK_MODULES = [
    "tasks.ingest",
    "tasks.reprocess",
    "tasks.recognition",
    "tasks.albums",
    "tasks.cleaning",
    "tasks.training",
]


def make_celery(settings: Settings) -> Celery:
    app = Celery("landmarks", broker=settings.broker_url, backend=settings.result_backend, include=TASK_MODULES)
    app.conf.update(
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="ingest",
        task_routes=TASK_ROUTES,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_expires=24 * 3600,
        # Reliability: a task is acknowledged only after it finished, and comes back if its worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Redis redelivers unacknowledged tasks after broker_visibility_timeout_s (4 h); it must exceed the longest
        # task (training runs report progress and are split into stages well under this).
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout_s,
            # Look for overdue unacknowledged messages (a killed worker's) every tenth of the timeout, at most
            # every 10 s; kombu's default waits interval x throttle = 100 s whatever the timeout.
            "unacked_restore_interval": min(10.0, max(1.0, settings.broker_visibility_timeout_s / 10)),
            "unacked_restore_throttle": 1,
            "queue_order_strategy": "priority",  # order of QUEUES for a worker consuming several
            "priority_steps": PRIORITY_STEPS,
        },
        task_default_priority=LIVE_PRIORITY,
        # Every kind of task has a soft and a hard time limit (tasks.limits, settings time_limits).
        task_annotations=[TimeLimits(settings.time_limits)],
        worker_soft_shutdown_timeout=SOFT_SHUTDOWN_TIMEOUT_S,
        worker_enable_soft_shutdown_on_idle=True,  # also hand reserved (prefetched) messages back at once
        worker_cancel_long_running_tasks_on_connection_loss=True,  # the broker redelivers them anyway
        broker_connection_retry_on_startup=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        timezone="UTC",
        landmarks_metrics_dir=str(metrics_dir(settings.state_dir)),  # read by workers.signals at worker start
        landmarks_log_json=settings.log_json,
        landmarks_worker_heartbeat_s=settings.worker_heartbeat_s,  # read by workers.heartbeat
        beat_schedule={
            "reconcile-photos": {"task": "ingest.reconcile", "schedule": settings.reconcile_interval_s},
            "feed-reprocess-jobs": {"task": "ingest.feed_reprocess", "schedule": settings.reprocess_feed_interval_s},
            # Mined candidates only count once cleaning accepted them: judge them daily.
            **(
                {"clean-gallery": {"task": "cleaning.clean_gallery", "schedule": 24 * 3600.0}}
                if settings.gallery.mine_uploads
                else {}
            ),
        },
    )
    app.steps["consumer"].add(Heartbeat)  # `landmarks status` reads workers from these, not from a ping
    return app


app = make_celery(get_settings())
