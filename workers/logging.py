"""Logging for every process (workers, CLI, bridge, API): one JSON line per event on stderr, via structlog.

structlog renders its own events and the standard library's (Celery, kombu, uvicorn, grpc) through one formatter,
accepting Celery's numeric levels too; every line of a task carries its identity (``task_id``, ``task``,
``queue``, ``photo_id``), so ``grep <photo id>`` finds a photo's whole story.
"""

from __future__ import annotations

import logging
import sys

import structlog

TASK_KEYS = ("task_id", "task", "queue", "photo_id")

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _numeric_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    numeric = logging.getLevelName(level.upper())
    return numeric if isinstance(numeric, int) else logging.INFO


def configure_logging(level: str | int = "INFO", json_lines: bool = True) -> None:
    """Route structlog and the standard library through one renderer: JSON lines, or a console view for humans."""
    numeric = _numeric_level(level)
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    logging.captureWarnings(True)  # Python warnings (Celery's SecurityWarning, deprecations) as JSON lines too


def bind_task(*, task_id: str | None, task: str, queue: str | None, photo_id: str | None) -> None:
    """Bind a task's identity to every log line it writes (contextvars: per thread of a pool child)."""
    structlog.contextvars.clear_contextvars()
    values = {"task_id": task_id, "task": task, "queue": queue, "photo_id": photo_id}
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def clear_task() -> None:
    structlog.contextvars.unbind_contextvars(*TASK_KEYS)
