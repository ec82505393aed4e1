"""`landmarks bridge run`: object-storage events (webhook, SeaweedFS filer stream) -> the ingest queue."""

from __future__ import annotations

import enum
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from shared.settings import Settings

app = typer.Typer(no_args_is_help=True)


@app.callback()
def bridge() -> None:
    """The event bridge: object-storage events -> Celery's ingest queue."""


class Source(enum.StrEnum):
    seaweedfs = "seaweedfs"
    webhook = "webhook"
    both = "both"


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


def _check_broker(settings: Settings, celery_app) -> None:
    from shared.ops.redact import redact_text, redact_url

    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        url = settings.broker_url
        raise _fail(f"the Redis broker at {redact_url(url)} is unreachable: {redact_text(str(exc), url)}") from exc


def _cursor_store(settings: Settings, cursor_name: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from shared.db.session import make_engine, make_session_factory
    from workers.bridge.cursor import CursorStore

    store = CursorStore(make_session_factory(make_engine(settings.database_url)))
    url = make_url(settings.database_url).render_as_string(hide_password=True)
    try:
        store.load(cursor_name)
    except OperationalError as exc:
        raise _fail(f"PostgreSQL at {url} is unreachable: {exc.orig}") from exc
    except ProgrammingError as exc:
        raise _fail(f"PostgreSQL at {url} has no event_cursors table: run `landmarks db upgrade`") from exc
    return store


@app.command()
def run(
    source: Annotated[
        Source, typer.Option(help="Which sources to run; 'both' follows SeaweedFS only when S3 is the local weed.")
    ] = Source.both,
    host: Annotated[str, typer.Option(help="Address the webhook listens on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Webhook port (default: settings webhook_port).")] = None,
    start_window_s: Annotated[
        float, typer.Option(help="First start without a stored cursor: replay the filer's last N seconds.")
    ] = 300.0,
) -> None:
    """Receive bucket notifications and follow the SeaweedFS filer; send each event to `ingest.object_event`.

    MinIO: `mc admin config set ALIAS notify_webhook:landmarks endpoint=http://HOST:PORT/events
    auth_token=TOKEN` (TOKEN = LANDMARKS_WEBHOOK_TOKEN). Stops cleanly on SIGTERM/SIGINT.
    """
    import structlog

    from shared.settings import get_settings
    from workers.bridge.dispatch import celery_dispatch, logged
    from workers.bridge.runner import (
        SubscriberThread,
        WebhookServer,
        filer_grpc_address,
        is_local_seaweed,
        run_until_stopped,
    )
    from workers.bridge.subscriber import SeaweedSubscriber
    from workers.bridge.webhook import create_webhook_app
    from workers.celery_app import app as celery_app
    from workers.exposure import WeakSecret, refuse_weak_secrets
    from workers.logging import configure_logging

    settings = get_settings()
    if source in (Source.webhook, Source.both):
        try:
            refuse_weak_secrets("bridge webhook", host, {"webhook token": settings.webhook_token.get_secret_value()})
        except WeakSecret as exc:
            raise _fail(str(exc)) from exc
    configure_logging(settings.log_level, settings.log_json)
    log = structlog.get_logger("landmarks.bridge")
    _check_broker(settings, celery_app)
    dispatch = logged(celery_dispatch(celery_app), log)

    webhook = None
    if source in (Source.webhook, Source.both):
        webhook_app = create_webhook_app(
            token=settings.webhook_token.get_secret_value(),
            max_body_bytes=settings.webhook_max_body_bytes,
            dispatch=dispatch,
        )
        webhook = WebhookServer(webhook_app, host, port or settings.webhook_port)

    subscriber = None
    local = is_local_seaweed(settings.s3.endpoint, settings.seaweed.s3_port)
    if source is Source.seaweedfs or (source is Source.both and local):
        address = filer_grpc_address(settings.s3.endpoint, settings.seaweed.filer_grpc_port)
        follower = SeaweedSubscriber(
            address=address,
            dispatch=dispatch,
            cursors=_cursor_store(settings, f"seaweedfs:{address}"),
            bucket=settings.s3.photos_bucket,
            start_window_s=start_window_s,
        )
        subscriber = SubscriberThread(follower)
    elif source is Source.both:
        log.info("seaweedfs.skipped", reason="the S3 endpoint is not the local SeaweedFS", s3=settings.s3.endpoint)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        code = run_until_stopped(stop, webhook=webhook, subscriber=subscriber)
    except RuntimeError as exc:
        raise _fail(str(exc)) from exc
    raise typer.Exit(code)
