"""Operations without services: selector rules, priority layout, failure summaries, CLI refusals, log lines and
multiprocess metrics (real prometheus-client files written by two processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from celery import Celery
from typer.testing import CliRunner

from shared.db.models import PhotoStatus
from shared.ops.failures import traceback_summary
from shared.ops.selectors import PhotoSelector, SelectorError, photo_ids_query
from workers.celery_app import LIVE_PRIORITY, PRIORITY_STEPS, QUEUES, REPROCESS_PRIORITY, app
from workers.cli import ops as cli_ops
from workers.fleet import priority_key, priority_steps
from workers.metrics import collect
from workers.signals import photo_id_of

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("selector", "empty"),
    [
        (PhotoSelector(), True),
        (PhotoSelector(all=True), False),
        (PhotoSelector(stale=True), False),
        (PhotoSelector(user="alice"), False),
        (PhotoSelector(since=datetime(2024, 1, 1, tzinfo=UTC)), False),
        (PhotoSelector(status=PhotoStatus.failed), False),
        (PhotoSelector(model_older_than="v0002"), False),
        (PhotoSelector(landmark="colosseum"), False),
    ],
)
def test_a_selection_needs_a_selector(selector: PhotoSelector, empty: bool) -> None:
    assert selector.is_empty() is empty


def test_refusals_happen_before_any_query() -> None:
    with pytest.raises(SelectorError, match="no selector"):
        photo_ids_query(None, PhotoSelector())  # type: ignore[arg-type]
    with pytest.raises(SelectorError, match="never reprocessed"):
        photo_ids_query(None, PhotoSelector(status=PhotoStatus.deleted))  # type: ignore[arg-type]


def test_reprocessing_is_served_after_live_uploads_on_redis() -> None:
    # kombu's Redis transport BRPOPs the step lists in ascending order: the smaller number is served first.
    assert LIVE_PRIORITY < REPROCESS_PRIORITY
    assert LIVE_PRIORITY in PRIORITY_STEPS and REPROCESS_PRIORITY in PRIORITY_STEPS
    assert app.conf.task_default_priority == LIVE_PRIORITY
    assert priority_steps(app) == PRIORITY_STEPS
    assert priority_key("recognize", 0) == "recognize"
    assert priority_key("recognize", 9) == "recognize\x06\x169"
    assert set(QUEUES) == {"ingest", "recognize", "albums", "cleaning", "training"}


def test_graceful_shutdown_settings() -> None:
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_soft_shutdown_timeout > 0
    assert app.conf.worker_hijack_root_logger is False


def test_traceback_summary_is_the_last_line() -> None:
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nshared.errors.PermanentError: decode_error\n'
    assert traceback_summary(tb, "r") == "shared.errors.PermanentError: decode_error"
    assert traceback_summary(None, "no_owner: no metadata") == "no_owner: no metadata"


def test_photo_id_comes_from_the_task_signature() -> None:
    celery = Celery("ops-unit", set_as_current=False)

    @celery.task(name="t.photo")
    def by_photo(photo_id: str, etag: str | None) -> None: ...

    @celery.task(name="t.bound", bind=True)
    def bound(self, photo_id: str) -> None: ...

    @celery.task(name="t.record")
    def by_record(record: dict) -> None: ...

    assert photo_id_of(by_photo, ("p-1", "e"), {}) == "p-1"
    assert photo_id_of(by_photo, (), {"photo_id": "p-2", "etag": None}) == "p-2"
    assert photo_id_of(bound, ("p-3",), {}) == "p-3"
    assert photo_id_of(by_record, ({"s3": {}},), {}) is None
    assert photo_id_of(by_photo, ("a", "b", "c"), {}) is None  # arguments that do not fit: no id, no error


def _ops_cli() -> typer.Typer:
    root = typer.Typer()
    cli_ops.register(root)
    return root


def test_reprocess_refuses_without_a_selector() -> None:
    result = CliRunner().invoke(_ops_cli(), ["reprocess", "--dry-run"])
    assert result.exit_code == 2 and "refusing to reprocess without a selector" in result.output


@pytest.mark.parametrize("args", [["failures", "retry"], ["failures", "retry", "3", "--all"]])
def test_retry_needs_ids_or_all(args: list[str]) -> None:
    result = CliRunner().invoke(_ops_cli(), args)
    assert result.exit_code == 2 and "name failure ids or pass --all" in result.output


def test_log_lines_are_json_with_the_task_context() -> None:
    code = textwrap.dedent(
        """
        import structlog, logging
        from workers.logging import bind_task, clear_task, configure_logging
        configure_logging(20)
        bind_task(task_id="t-1", task="recognition.recognize_photo", queue="recognize", photo_id="p-1")
        structlog.get_logger("x").info("photo_recognized", duration_ms=12.5)
        logging.getLogger("celery.app.trace").info("Task succeeded")
        clear_task()
        structlog.get_logger("x").info("after")
        """
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    first, second, third = (json.loads(line) for line in run.stderr.strip().splitlines())
    context = {"task_id": "t-1", "task": "recognition.recognize_photo", "queue": "recognize", "photo_id": "p-1"}
    assert first["event"] == "photo_recognized" and first["duration_ms"] == 12.5 and first["level"] == "info"
    assert context.items() <= first.items() and "timestamp" in first
    assert second["event"] == "Task succeeded" and context.items() <= second.items()  # Celery's own lines too
    assert third["event"] == "after" and "photo_id" not in third and "task_id" not in third


def test_metrics_from_several_processes_add_up(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from workers import metrics
        metrics.enable_multiprocess(Path({str(tmp_path)!r}))
        m = metrics.metrics()
        m.task_finished(task="recognition.recognize_photo", queue="recognize", state="success", seconds=0.5)
        m.photo_outcome({{"action": "recognized", "landmark": "colosseum"}}, 0.5)
        m.photo_outcome({{"action": "recognized", "landmark": None}}, 0.2)
        m.photo_outcome({{"action": "failed", "reason": "decode_error"}}, 0.1)
        m.photo_outcome({{"action": "skipped"}}, 0.01)
        m.object_event({{"action": "recognize", "photo_id": "p"}})
        m.album_write("applied")
        """
    )
    for _ in range(2):  # two processes, like two pool children
        run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
    text = collect(tmp_path).decode()
    assert 'landmarks_tasks_total{queue="recognize",state="success",task="recognition.recognize_photo"} 2.0' in text
    assert 'landmarks_photos_processed_total{outcome="landmark"} 2.0' in text
    assert 'landmarks_photos_processed_total{outcome="no_landmark"} 2.0' in text
    assert 'landmarks_photos_processed_total{outcome="failed"} 2.0' in text
    assert "landmarks_photos_recognized_total 2.0" in text
    assert 'landmarks_photos_failed_total{reason="decode_error"} 2.0' in text
    assert "landmarks_recognition_latency_seconds_count 6.0" in text  # the skipped photo is not a latency
    assert 'landmarks_object_events_total{action="recognize"} 2.0' in text
    assert 'landmarks_album_writes_total{result="applied"} 2.0' in text
