"""`landmarks api serve|url`: the albums HTTP API and the album browser, one uvicorn process."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)

DEMO_TOKEN = "change-me-api-token"  # the default client's token in shared.settings
_TOKEN_PARAM = re.compile(r"(token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """uvicorn's access lines carry the query string: a sign-in link's ``?token=`` must not reach the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            args = list(record.args)
            args[2] = _TOKEN_PARAM.sub(r"\1***", args[2])
            record.args = tuple(args)
        return True


@app.callback()
def api() -> None:
    """The albums HTTP API (/v1, docs at /docs) and the album browser (/ui)."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default: settings api_host).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: settings api_port).")] = None,
) -> None:
    """Serve the API until SIGTERM/SIGINT. Clients and their tokens: LANDMARKS_API_TOKENS (JSON)."""
    import structlog
    import uvicorn
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from shared.settings import get_settings
    from workers.api import create_app
    from workers.exposure import WeakSecret, refuse_weak_secrets
    from workers.logging import configure_logging
    from workers.runtime import minio_client, presign_client, session_factory

    settings = get_settings()
    listen = host or settings.api_host
    tokens = {f"API token of client {name!r}": c.token.get_secret_value() for name, c in settings.api_tokens.items()}
    try:
        refuse_weak_secrets("API", listen, tokens or {"API token": None})
    except WeakSecret as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    configure_logging(settings.log_level, settings.log_json)
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    log = structlog.get_logger("landmarks.api")
    factory = session_factory()
    try:
        with factory() as session:
            session.execute(text("SELECT 1"))
    except OperationalError as exc:
        url = make_url(settings.database_url).render_as_string(hide_password=True)
        typer.echo(f"PostgreSQL at {url} is unreachable: {exc.orig}", err=True)
        raise typer.Exit(1) from exc
    weak = [name for name, c in settings.api_tokens.items() if c.token.get_secret_value() == DEMO_TOKEN]
    if weak:
        log.warning("api.demo_token", clients=weak, hint="set LANDMARKS_API_TOKENS before exposing the API")
    application = create_app(
        session_factory=factory,
        minio=minio_client(),
        presigner=presign_client(),
        clients=settings.api_tokens,
        max_pixels=settings.recognition.max_pixels,
        session_ttl=timedelta(seconds=settings.api_session_ttl_s),
        max_decode_bytes=settings.recognition.max_decode_bytes,
    )
    uvicorn.run(application, host=listen, port=port or settings.api_port, log_config=None)


@app.command()
def url(user: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Print the address of USER's album page (with a token that signs the browser in)."""
    from shared.settings import get_settings
    from workers.api import album_page_url

    typer.echo(album_page_url(get_settings(), user))


if __name__ == "__main__":
    app()
