"""`landmarks dev up|down|status`: the local services for development and CI, as a rich table or JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from devtools.stack.outcome import Outcome

# devtools.stack (MinIO, Redis and PostgreSQL clients) loads inside the commands, not at every CLI start.

app = typer.Typer(no_args_is_help=True)

STATE_STYLE = {
    "started": "green",
    "already running": "green",
    "running": "green",
    "reused": "cyan",
    "stopped": "dim",
    "skipped": "yellow",
    "failed": "bold red",
}

OnlyOption = Annotated[
    str | None,
    typer.Option("--only", help="Comma-separated services, e.g. postgres,redis,s3 (default: all)."),
]


def _names(only: str | None) -> list[str] | None:
    return None if only is None else [name.strip() for name in only.split(",") if name.strip()]


def _render(outcomes: list[Outcome], title: str) -> None:
    table = Table(title=title)
    for column in ("service", "state", "pid", "address", "detail"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        style = STATE_STYLE.get(o.state, "")
        detail = o.detail if not o.failed else o.detail.splitlines()[0] if o.detail else ""
        table.add_row(o.name, f"[{style}]{o.state}[/]", str(o.pid or ""), o.address, detail)
    console = Console()
    console.print(table)
    for o in outcomes:
        if o.failed and o.detail:
            console.print(f"[bold red]{o.name} failed:[/] {o.detail}", markup=True, highlight=False)


def _finish(outcomes: list[Outcome]) -> None:
    if any(o.failed for o in outcomes):
        raise typer.Exit(1)


@app.command()
def up(
    only: OnlyOption = None,
    services_only: Annotated[
        bool, typer.Option("--services-only", help="Only PostgreSQL, Redis and S3 (no workers).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service to become ready.")] = 60.0,
) -> None:
    """Start what is not running yet (idempotent); exits non-zero if anything failed."""
    from devtools.stack import stack
    from shared.settings import get_settings

    try:
        outcomes = stack.up(get_settings(), only=_names(only), services_only=services_only, timeout=timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--only") from exc
    _render(outcomes, "dev up")
    _finish(outcomes)


@app.command()
def down(only: OnlyOption = None) -> None:
    """Stop exactly the processes `dev up` started; servers it merely reused are left alone."""
    from devtools.stack import stack
    from shared.settings import get_settings

    try:
        outcomes = stack.down(get_settings(), only=_names(only))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--only") from exc
    _render(outcomes, "dev down")
    _finish(outcomes)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")] = False) -> None:
    """Each service: running (ours), reused (someone else's) or stopped, with PID and address."""
    from devtools.stack import stack
    from shared.settings import get_settings

    outcomes = stack.status(get_settings())
    if as_json:
        typer.echo(json.dumps([o.as_dict() for o in outcomes], indent=1))
    else:
        _render(outcomes, "dev status")
        if any(o.name == "flower" and o.state == "running" for o in outcomes):
            from devtools.stack.apps import flower_login

            Console().print(flower_login(get_settings().flower), highlight=False)
