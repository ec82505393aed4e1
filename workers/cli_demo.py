"""`landmarks demo prepare`: the demo's sample photos from Debian's gcompris-qt-data (see :mod:`workers.demo_data`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from workers import demo_data

app = typer.Typer(no_args_is_help=True)


def default_out_dir() -> Path:
    """``<state dir>/demo``: where `prepare` writes and the demo run reads."""
    from shared.settings import get_settings

    return get_settings().state_dir / "demo"


@app.command()
def prepare(
    rcc_dir: Annotated[
        Path, typer.Option("--rcc-dir", help=f"GCompris resource files (Debian's {demo_data.DEBIAN_PACKAGE}).")
    ] = demo_data.DEFAULT_RCC_DIR,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to (re)write (default: <LANDMARKS_STATE_DIR>/demo).", show_default=False),
    ] = None,
) -> None:
    """Write the demo's gallery, calibration photos and two users' uploads, with their CSVs and credits."""
    out_dir = out or default_out_dir()
    try:
        data = demo_data.prepare_demo(rcc_dir, out_dir)
    except (demo_data.DemoSourceMissingError, demo_data.RccFormatError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc

    users = Counter(u.user for u in data.uploads)
    known = Counter(u.user for u in data.uploads if u.expected_landmark)
    table = Table(title=f"Demo data in {data.out_dir}")
    table.add_column("what")
    table.add_column("photos", justify="right")
    table.add_column("where")
    table.add_row(f"gallery: {len(data.landmarks)} landmarks", str(data.gallery_photos), "gallery/<slug>/")
    table.add_row("calibration: non-landmarks", str(data.calibration_photos), "calibration/")
    for user, count in sorted(users.items()):
        table.add_row(f"uploads of {user} ({known[user]} of gallery landmarks)", str(count), f"uploads/{user}/")
    table.add_row("gallery manifest", "", data.gallery_csv.name)
    table.add_row("uploads and expected landmarks", "", data.uploads_csv.name)
    table.add_row("evaluation manifest (gallery + uploads as test)", "", data.eval_csv.name)
    table.add_row("authors and licences", "", data.attribution.name)
    Console().print(table)
