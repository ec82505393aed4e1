"""Time limits on every kind of task, applied as a Celery task annotation (``task_annotations``).

A task past its soft limit gets ``SoftTimeLimitExceeded``; ``workers.signals`` records that as a failure
(``time_limit``) and training marks its job failed. The hard limit kills the process a little later, for code
that does not return (a decoder stuck in C). Kinds: the task name's prefix, ``ingest.reconcile`` its own.
"""

from __future__ import annotations

from typing import Any

from shared.settings import TimeLimitSettings

KIND_BY_PREFIX = {
    "ingest": "ingest",
    "recognition": "recognize",
    "albums": "albums",
    "cleaning": "cleaning",
    "training": "training",
}
KIND_BY_NAME = {"ingest.reconcile": "reconcile"}


def kind_of(task_name: str) -> str | None:
    return KIND_BY_NAME.get(task_name) or KIND_BY_PREFIX.get(task_name.partition(".")[0])


def hard_limit(soft_s: float) -> float:
    """10% after the soft limit, at least 30 s: time to record the failure and roll back."""
    return soft_s + max(30.0, soft_s * 0.1)


class TimeLimits:
    """``soft_time_limit`` and ``time_limit`` of each task by its kind (Celery calls :meth:`annotate`)."""

    def __init__(self, limits: TimeLimitSettings) -> None:
        self.limits = limits

    def for_task(self, task_name: str) -> tuple[float, float] | None:
        kind = kind_of(task_name)
        if kind is None:
            return None
        soft = float(getattr(self.limits, kind))
        return soft, hard_limit(soft)

    def annotate(self, task: Any) -> dict[str, float] | None:
        limits = self.for_task(task.name)
        return None if limits is None else {"soft_time_limit": limits[0], "time_limit": limits[1]}

    def annotate_any(self) -> None:
        return None
