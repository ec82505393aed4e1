"""`landmarks reprocess | status | failures | metrics`: the operator's commands, thin shells over shared.ops.

Reprocessing goes onto the recognize queue at ``REPROCESS_PRIORITY`` (served after fresh uploads, see
:mod:`workers.celery_app`); failures are retried at the same priority. Nothing here is imported by workers.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
import uuid
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.db.enums import PhotoStatus
from workers.cli.tables import print_table

if TYPE_CHECKING:
    from shared.db.models import ReprocessJob
    from shared.ops.selectors import PhotoSelector

# SQLAlchemy, Redis and Celery load inside the commands (with _errors()): `landmarks --help` does not pay for them.
console = Console()
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]

failures_app = typer.Typer(no_args_is_help=True, help="Permanent task failures: list, inspect, retry.")
metrics_app = typer.Typer(no_args_is_help=True, help="Prometheus metrics of the workers.")
reprocess_app = typer.Typer(help="Reprocess jobs: create (selectors), list, pause, resume, cancel.")
FEED_TASK = "ingest.feed_reprocess"


def register(app: typer.Typer) -> None:
    """Attach `reprocess`, `status`, `failures ...` and `metrics serve` to the top-level app."""
    reprocess_app.callback(invoke_without_command=True)(reprocess_command)
    app.add_typer(reprocess_app, name="reprocess")
    app.command("status")(status_command)
    app.add_typer(failures_app, name="failures")
    app.add_typer(metrics_app, name="metrics")
    app.command("flower")(flower_command)


def _database_errors() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    return (OperationalError, ProgrammingError)


def _driver_errors() -> tuple[type[Exception], ...]:
    """psycopg2's own errors: the plain-SQL reads (``workers.runtime.db_rows``) meet them unwrapped."""
    import psycopg2

    return (psycopg2.OperationalError, psycopg2.ProgrammingError)


def _broker_errors() -> tuple[type[Exception], ...]:
    import redis
    from kombu.exceptions import OperationalError as KombuOperationalError

    return (KombuOperationalError, redis.RedisError, OSError)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _database_error(exc: Exception) -> typer.Exit:
    """SQLAlchemy's errors carry psycopg2's as ``orig``; the plain-SQL reads raise psycopg2's own."""
    import psycopg2

    from shared.ops.redact import redact_url
    from shared.settings import get_settings

    url = redact_url(get_settings().database_url)
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, psycopg2.ProgrammingError):
        return _fail(f"PostgreSQL at {url} has no landmarks schema: run `landmarks db upgrade` ({orig})")
    return _fail(f"PostgreSQL at {url} is unreachable: {orig}")


def _broker_error(exc: Exception) -> typer.Exit:
    from shared.ops.redact import redact_text, redact_url
    from shared.settings import get_settings

    url = get_settings().broker_url
    return _fail(f"the Redis broker at {redact_url(url)} is unreachable: {redact_text(str(exc), url)}")


def _utc(value: datetime | None) -> datetime | None:
    """Dates without a zone are UTC (what the database stores)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if is_dataclass(value):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(payload: Any) -> str:
    return json.dumps(payload, indent=2, default=_json_default)


def _celery():
    from workers.celery_app import app  # Celery loads only for the commands that talk to the broker

    return app


def selector_from_options(
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: PhotoStatus | None = None,
    model_older_than: str | None = None,
    stale: bool = False,
    landmark: str | None = None,
    all_photos: bool = False,
) -> PhotoSelector:
    from shared.ops.selectors import PhotoSelector

    return PhotoSelector(
        user=user,
        since=_utc(since),
        until=_utc(until),
        status=status,
        model_older_than=model_older_than,
        stale=stale,
        landmark=landmark,
        all=all_photos,
    )


def _operator() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return socket.gethostname()


def start_job(selector: PhotoSelector) -> ReprocessJob:
    """Create the job row, then nudge the feeder (beat starts it within seconds anyway)."""
    from shared.ops import jobs as job_ops
    from workers.celery_app import REPROCESS_PRIORITY
    from workers.runtime import db_session

    with db_session() as session:
        job = job_ops.create_job(session, selector, priority=REPROCESS_PRIORITY, created_by=_operator())
    try:
        _celery().send_task(FEED_TASK)
    except _broker_errors() as exc:
        typer.echo(f"warning: could not nudge the feeder ({exc}); Celery beat starts job {job.id}", err=True)
    return job


def reprocess_command(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Photos of this user.")] = None,
    since: Annotated[datetime | None, typer.Option(formats=DATE_FORMATS, help="Created at or after (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(formats=DATE_FORMATS, help="Created before (UTC).")] = None,
    status: Annotated[PhotoStatus | None, typer.Option("--status", help="Photos in this state.")] = None,
    model_older_than: Annotated[
        str | None, typer.Option("--model-older-than", help="Processed by a model version older than this one.")
    ] = None,
    stale: Annotated[bool, typer.Option("--stale", help="Not processed by the active model version.")] = False,
    landmark: Annotated[
        str | None, typer.Option("--landmark", help="In this landmark's albums or recognised as it (slug).")
    ] = None,
    all_photos: Annotated[bool, typer.Option("--all", help="Every photo (deleted ones never).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be enqueued.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until every photo is processed again.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 3600.0,
) -> None:
    """Recognise selected photos again, behind fresh uploads, as a job (selectors combine; one is required).

    The command creates the job and returns; a feeder tops the recognize queue up from it (reprocess_queue_bound).
    """
    if ctx.invoked_subcommand is not None:
        return
    from shared.ops import jobs as job_ops
    from shared.ops.selectors import SelectorError
    from workers.runtime import db_session

    selector = selector_from_options(user, since, until, status, model_older_than, stale, landmark, all_photos)
    if selector.is_empty():
        raise _fail("refusing to reprocess without a selector: pass --user/--since/--until/--status/"
                    "--model-older-than/--stale/--landmark, or --all", code=2)  # fmt: skip
    try:
        if dry_run:
            with db_session() as session:
                count = job_ops.count_selection(session, selector)
            typer.echo(f"would enqueue {count} photos (dry run, nothing changed)")
            return
        job = start_job(selector)
    except SelectorError as exc:
        raise _fail(f"error: {exc}", code=2) from exc
    except _database_errors() as exc:
        raise _database_error(exc) from exc
    typer.echo(
        f"reprocess job {job.id}: {job.total} photos, fed onto the recognize queue at priority {job.priority} "
        "(`landmarks reprocess list | pause | resume | cancel`)"
    )
    if wait and job.total:
        _wait_for(job.id, timeout)


def _wait_for(job_id: int, timeout: float) -> None:
    from shared.db.models import JobState
    from shared.ops import jobs as job_ops
    from workers.runtime import db_session

    deadline = time.monotonic() + timeout
    columns = [TextColumn("reprocessing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
               TimeElapsedColumn()]  # fmt: skip
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("reprocess", total=None, detail="")
        while True:
            with db_session() as session:
                job = job_ops.get_job(session, job_id)
                processed = job_ops.processed_since(session, job)
            detail = f"{job.state.value}, sent {job.enqueued}"
            bar.update(task, total=job.total, completed=processed, detail=detail)
            if job.state == JobState.cancelled or (job.state == JobState.finished and processed >= (job.total or 0)):
                break
            if time.monotonic() > deadline:
                raise _fail(f"timed out: about {processed} of {job.total} photos processed again (job {job_id})")
            time.sleep(2.0)
    typer.echo(f"job {job_id} {job.state.value}: about {processed} of {job.total} photos processed again")


@reprocess_app.command("list")
def reprocess_list(
    live: Annotated[bool, typer.Option("--live", help="Only running and paused jobs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Reprocess jobs, newest first: selection, state, photos sent of the total, who started them and when."""
    from shared.ops.status import job_summaries
    from workers.runtime import db_rows

    try:
        with db_rows() as read:
            rows = [asdict(job) for job in job_summaries(read, live_only=live)]
    except _driver_errors() as exc:
        raise _database_error(exc) from exc
    if as_json:
        typer.echo(_dumps(rows))
        return
    table = Table()
    for column in ("Job", "State", "Sent", "Of", "Selector", "By", "Created"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["id"]), r["state"], str(r["enqueued"]), str(r["total"]), json.dumps(r["selector"]),
                      r["created_by"] or "-", f"{r['created_at']:%Y-%m-%d %H:%M:%S}")  # fmt: skip
    console.print(table if rows else "no reprocess jobs")


def _change(job_id: int, action: str) -> None:
    from shared.ops import jobs as job_ops
    from workers.runtime import db_session

    try:
        with db_session() as session:
            job = job_ops.change_state(session, job_id, action)
            state = job.state.value
    except (job_ops.JobNotFound, job_ops.JobStateError) as exc:
        raise _fail(f"error: {exc}") from exc
    except _database_errors() as exc:
        raise _database_error(exc) from exc
    typer.echo(f"job {job_id}: {state}")


@reprocess_app.command("pause")
def reprocess_pause(job_id: Annotated[int, typer.Argument(help="Job id (from `reprocess list`).")]) -> None:
    """Stop feeding the job (messages already queued still run); `resume` continues after its cursor."""
    _change(job_id, "pause")


@reprocess_app.command("resume")
def reprocess_resume(job_id: Annotated[int, typer.Argument(help="Job id (from `reprocess list`).")]) -> None:
    """Feed a paused job again from where it stopped."""
    _change(job_id, "resume")


@reprocess_app.command("cancel")
def reprocess_cancel(job_id: Annotated[int, typer.Argument(help="Job id (from `reprocess list`).")]) -> None:
    """Stop the job for good (messages already queued still run)."""
    _change(job_id, "cancel")


def collect_status(ping_timeout: float | None = None) -> dict[str, Any]:
    """Everything `landmarks status` shows, as one JSON-ready dict (the database part fails loudly).

    The database is read with plain SQL on psycopg2 (:mod:`shared.ops.status`), the broker with plain redis-py
    and the workers from their heartbeats (:mod:`workers.broker`): no SQLAlchemy or Celery to import, no broadcast
    that waits its whole timeout. With ``ping_timeout`` the workers are pinged instead.
    """
    import redis

    from shared.ops.redact import redact_text, redact_url
    from shared.ops.status import database_status
    from shared.settings import get_settings
    from workers import broker as fleet
    from workers.queues import PRIORITY_STEPS, QUEUES
    from workers.runtime import db_rows

    with db_rows() as read:  # plain SQL on psycopg2: no SQLAlchemy or models to import
        db = database_status(read)
    broker_url = get_settings().broker_url
    broker: dict[str, Any] = {"url": redact_url(broker_url), "reachable": True, "error": None}
    workers: dict[str, list[str]] | None = None
    queues: dict[str, Any] | None = None
    unacked: int | None = None
    errors = (fleet.BrokerUnavailable, redis.RedisError, OSError)
    if ping_timeout is not None:
        errors += _broker_errors()  # Celery's (kombu) errors: imported only for --ping
    try:
        with fleet.connect(broker_url) as client:
            depths = fleet.queue_depths(client, QUEUES, PRIORITY_STEPS)
            unacked = fleet.unacked_count(client)
            if ping_timeout is None:
                workers = fleet.workers_online(client, QUEUES)
        queues = {d.name: {"depth": d.total, "by_priority": {str(k): v for k, v in d.by_priority.items()}}
                  for d in depths}  # fmt: skip
        if ping_timeout is not None:
            from workers.fleet import workers_by_queue

            workers = workers_by_queue(_celery(), QUEUES, timeout=ping_timeout)
    except errors as exc:
        named = exc if isinstance(exc, fleet.BrokerUnavailable) else fleet.unavailable(broker_url, exc)
        broker.update(reachable=False, error=redact_text(str(named), broker_url))
        workers = queues = unacked = None
    return {
        "time": db.now,
        "broker": broker,
        "workers": workers,
        "queues": queues,
        "unacked": unacked,
        "photos": db.photos,
        "photos_approximate": db.photos_approximate,
        "reprocess_jobs": [asdict(job) for job in db.reprocess_jobs],
        "failures": {"last_hour": db.failures_last_hour, "open": db.open_failures},
        "model": db.model,
        "bridge": db.bridge,
    }


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ping: Annotated[
        bool, typer.Option("--ping", help="Ask the workers with a broadcast ping instead of reading heartbeats.")
    ] = False,
    ping_timeout: Annotated[float, typer.Option(help="Seconds to wait for workers to answer --ping.")] = 1.0,
) -> None:
    """Workers online per queue, queue depths, photos by status, recent failures, active model, bridge lag.

    Workers count as online while their heartbeat (every worker_heartbeat_s) is fresh: a killed worker drops out
    after three missed beats, a stopped one at once.
    """
    try:
        payload = collect_status(ping_timeout if ping else None)
    except _driver_errors() as exc:
        raise _database_error(exc) from exc
    if as_json:
        typer.echo(_dumps(payload))
        return
    _print_status(payload)


def _print_status(payload: dict[str, Any]) -> None:
    broker = payload["broker"]
    if not broker["reachable"]:
        console.print(f"[red]broker unreachable:[/] {broker['error']}")
    table = Table(title="Queues", title_justify="left")
    table.add_column("Queue")
    table.add_column("Waiting", justify="right")
    table.add_column("By priority (0 first)")
    table.add_column("Workers online")
    for name in payload["queues"] or payload["workers"] or {}:
        depth = (payload["queues"] or {}).get(name, {})
        by_pri = " ".join(f"{k}:{v}" for k, v in depth.get("by_priority", {}).items())
        nodes = (payload["workers"] or {}).get(name) or []
        table.add_row(name, str(depth.get("depth", "?")), by_pri, ", ".join(nodes) or "[red]none[/]")
    print_table(console, table)
    if payload["unacked"] is not None:
        console.print(f"in flight (delivered, not acknowledged): {payload['unacked']}")
    about = "about " if payload["photos_approximate"] else ""
    console.print("photos: " + "  ".join(f"{k} {about}{v}" for k, v in payload["photos"].items()))
    for job in payload["reprocess_jobs"]:
        console.print(f"reprocess job {job['id']} {job['state']}: sent {job['enqueued']} of {job['total']} "
                      f"({json.dumps(job['selector'])})")  # fmt: skip
    console.print(f"failures: {payload['failures']['last_hour']} in the last hour, {payload['failures']['open']} open")
    model = payload["model"]
    if model is None:
        console.print("[yellow]no active model version[/]")
    else:
        metrics = ", ".join(f"{k}={v}" for k, v in model.metrics.items() if not isinstance(v, dict | list))
        console.print(f"active model: [bold]{model.version}[/] ({model.backbone}) {metrics}")
    for lag in payload["bridge"]:
        last = f"last event {lag.event_age_s:.0f} s ago" if lag.event_age_s is not None else "position not a time"
        if lag.state == "stalled":
            console.print(f"[red]bridge {lag.name}: stalled[/], no heartbeat for {lag.lag_s:.0f} s (stopped or "
                          f"disconnected; uploads since then wait for it), {last}")  # fmt: skip
        else:
            console.print(f"bridge {lag.name}: {lag.state}, heartbeat {lag.seconds_since_update:.0f} s ago, {last}")
    if not payload["bridge"]:
        console.print("bridge: no cursor yet (no stream-following bridge has run)")


@failures_app.command("list")
def failures_list(
    since: Annotated[datetime | None, typer.Option(formats=DATE_FORMATS, help="Created at or after (UTC).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    include_resolved: Annotated[bool, typer.Option("--resolved", help="Include resolved failures.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Open failures (newest first) with their reason and the traceback's last line."""
    from shared.ops import failures as failure_ops
    from workers.runtime import db_session

    try:
        with db_session() as session:
            rows = failure_ops.list_failures(session, since=_utc(since), limit=limit, include_resolved=include_resolved)
    except _database_errors() as exc:
        raise _database_error(exc) from exc
    if as_json:
        typer.echo(_dumps([asdict(r) for r in rows]))
        return
    if not rows:
        console.print("no failures")
        return
    table = Table()
    for column in ("ID", "When", "Object", "Owner", "Photo", "Reason", "Tries", "Last line"):
        table.add_column(column)
    for r in rows:
        where = f"s3://{r.bucket}/{r.key}" if r.key else "-"
        table.add_row(str(r.id), f"{r.created_at:%Y-%m-%d %H:%M:%S}", where, r.owner or "-",
                      r.photo_status or "-", r.reason, str(r.attempts), r.summary)  # fmt: skip
    print_table(console, table)


@failures_app.command("show")
def failures_show(
    failure_id: Annotated[int, typer.Argument(help="Failure id (from `failures list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One failure with its full traceback."""
    from shared.ops import failures as failure_ops
    from workers.runtime import db_session

    try:
        with db_session() as session:
            row = failure_ops.get_failure(session, failure_id)
    except failure_ops.FailureNotFound as exc:
        raise _fail(f"error: {exc}") from exc
    except _database_errors() as exc:
        raise _database_error(exc) from exc
    if as_json:
        typer.echo(_dumps(asdict(row)))
        return
    for name, value in asdict(row).items():
        if name != "traceback":
            console.print(f"[bold]{name}[/]: {value}")
    console.print("[bold]traceback[/]:")
    console.print(row.traceback or "(none recorded)", markup=False, highlight=False)


@failures_app.command("retry")
def failures_retry(
    failure_ids: Annotated[list[int] | None, typer.Argument(help="Failure ids to retry.")] = None,
    retry_all: Annotated[bool, typer.Option("--all", help="Retry every open failure.")] = False,
) -> None:
    """Reset the photos to pending and recognise them again; a failure resolves only when that succeeds."""
    from shared.ops import failures as failure_ops
    from workers.celery_app import REPROCESS_PRIORITY
    from workers.fleet import send_object_events, send_recognitions
    from workers.runtime import db_session

    if bool(failure_ids) == retry_all:
        raise _fail("name failure ids or pass --all (not both)", code=2)
    try:
        with db_session() as session:
            plan = failure_ops.plan_retry(session, None if retry_all else failure_ids)
    except _database_errors() as exc:
        raise _database_error(exc) from exc
    app = _celery()
    try:
        sent = send_recognitions(app, plan.photo_ids, priority=REPROCESS_PRIORITY)
        ingested = send_object_events(app, plan.objects, priority=REPROCESS_PRIORITY)
    except _broker_errors() as exc:
        raise _broker_error(exc) from exc
    for failure_id, why in plan.skipped:
        typer.echo(f"skipped failure {failure_id}: {why}", err=True)
    typer.echo(f"retrying {sent} photos ({plan.reset} reset to pending), {ingested} objects ingested again")


@metrics_app.command("serve")
def metrics_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port (default 9464).")] = None,
) -> None:
    """Serve the workers' Prometheus metrics at http://HOST:PORT/metrics (summed over every worker process)."""
    from shared.settings import get_settings
    from workers import metrics
    from workers.fleet_metrics import FleetCollector, fleet_reader

    directory = metrics.metrics_dir(get_settings().state_dir)
    chosen = port or metrics.DEFAULT_PORT
    typer.echo(f"serving {directory} at http://{host}:{chosen}/metrics", err=True)
    metrics.serve(directory, host, chosen, extra=FleetCollector(fleet_reader()))


FLOWER_DEFAULT_PASSWORDS = ("landmarks", "admin")  # shared.settings' default, and the user name as password


def flower_command(
    address: Annotated[str, typer.Option(help="Address Flower listens on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port (default: settings flower.port).")] = None,
) -> None:
    """Run Flower (Celery monitoring) with basic auth: FLOWER_BASIC_AUTH=user:password, else settings flower.*.

    Refuses a default or empty password unless Flower listens on loopback; then replaces this process with
    `celery -A workers.celery_app flower`, the password passed in the environment (not on the command line).
    """
    import os

    from shared.settings import get_settings
    from workers.exposure import WeakSecret, refuse_weak_secrets

    settings = get_settings()
    auth = os.environ.get("FLOWER_BASIC_AUTH") or (
        f"{settings.flower.user}:{settings.flower.password.get_secret_value()}"
    )
    passwords = {
        f"Flower password of {user or '(no user)'}": pw for user, _, pw in (p.partition(":") for p in auth.split(","))
    }
    try:
        refuse_weak_secrets("Flower", address, passwords, defaults=FLOWER_DEFAULT_PASSWORDS)
    except WeakSecret as exc:
        raise _fail(str(exc)) from exc
    argv = ["celery", "-A", "workers.celery_app", "flower", f"--address={address}"]
    argv.append(f"--port={port or settings.flower.port}")
    os.execvpe(argv[0], argv, {**os.environ, "FLOWER_BASIC_AUTH": auth})
