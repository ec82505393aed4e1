"""The fleet's queues and priority steps as plain values: the Celery app routes by them, and `landmarks status`
and ``/metrics`` read the broker by them without importing Celery."""

from __future__ import annotations

from tasks.priorities import LIVE_PRIORITY, PRIORITY_STEPS, REPROCESS_PRIORITY

__all__ = ["LIVE_PRIORITY", "PRIORITY_STEPS", "QUEUES", "REPROCESS_PRIORITY"]

QUEUES = ("ingest", "recognize", "albums", "cleaning", "training")
