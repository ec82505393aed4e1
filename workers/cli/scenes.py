"""`landmarks scenes --user U`: a user's scene albums (architecture, food, pets, ...) from the scene tags that
recognition writes next to the landmark decision."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from workers.cli.tables import print_table

console = Console()


def register(app: typer.Typer) -> None:
    @app.command()
    def scenes(
        user: Annotated[str, typer.Option("--user", "-u", help="Whose scene albums.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Print a user's scene albums (label -> photos), by each photo's current model version."""
        from shared.scenes.store import UnknownUserError, list_scene_albums
        from workers.runtime import db_session

        try:
            with db_session() as session:
                albums = list_scene_albums(session, user)
        except UnknownUserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        if as_json:
            typer.echo(json.dumps({"user": user, "scenes": [asdict(a) for a in albums]}, indent=2))
            return
        if not albums:
            console.print(f"[yellow]{user} has no scene albums yet.[/]")
            return
        table = Table(title=f"{user} - scenes", title_justify="left")
        table.add_column("Scene")
        table.add_column("Photos", justify="right")
        table.add_column("Photo keys (score)")
        for album in albums:
            keys = "\n".join(f"{p.key} ({p.score:.2f})" for p in album.photos)
            table.add_row(album.title, str(album.photo_count), keys)
        print_table(console, table)
