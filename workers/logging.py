"""Logging for every process (workers, CLI, bridge): one JSON line per event on stderr, via structlog.

The renderer lives in :mod:`workers.bridge.logs` (its author wrote it first); this module is the entry points'
one door to it, accepting Celery's numeric levels too, plus the per-task context that every line of a task
carries (``task_id``, ``task``, ``queue``, ``photo_id``), so ``grep <photo id>`` finds a photo's whole story.
"""

from __future__ import annotations

import logging

import structlog

from workers.bridge.logs import configure_logging as _configure

TASK_KEYS = ("task_id", "task", "queue", "photo_id")


def configure_logging(level: str | int = "INFO", json_lines: bool = True) -> None:
    """Route structlog and the standard library (Celery, kombu, uvicorn) through one JSON renderer."""
    name = logging.getLevelName(level) if isinstance(level, int) else str(level)
    _configure(name if isinstance(name, str) else "INFO", json_lines)
    logging.captureWarnings(True)  # Python warnings (Celery's SecurityWarning, deprecations) as JSON lines too


def bind_task(*, task_id: str | None, task: str, queue: str | None, photo_id: str | None) -> None:
    """Bind a task's identity to every log line it writes (contextvars: per thread of a pool child)."""
    structlog.contextvars.clear_contextvars()
    values = {"task_id": task_id, "task": task, "queue": queue, "photo_id": photo_id}
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def clear_task() -> None:
    structlog.contextvars.unbind_contextvars(*TASK_KEYS)
