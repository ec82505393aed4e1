"""`landmarks upload` and `landmarks albums`: the photo service's side, for demos and operators."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from shared.albums import list_albums
from shared.db.models import Photo, PhotoStatus
from shared.settings import get_settings
from shared.uploads import upload_photos
from workers.runtime import db_session, minio_client

console = Console()
FINAL = (PhotoStatus.done, PhotoStatus.failed, PhotoStatus.deleted)


def wait_for_photos(bucket: str, keys: list[str], timeout_s: float) -> dict[str, str]:
    """Poll until every key has a photo row in a final state; returns key -> status (``missing`` if none)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db_session() as session:
            rows = dict(
                session.execute(
                    select(Photo.key, Photo.status).where(Photo.bucket == bucket, Photo.key.in_(keys))
                ).all()
            )
        if all(rows.get(k) in FINAL for k in keys) or time.monotonic() > deadline:
            return {k: rows[k].value if k in rows else "missing" for k in keys}
        time.sleep(0.2)


def albums_json(user: str) -> str:
    """What ``GET /v1/users/{user}/albums`` answers, with addresses under the API's configured address."""
    from workers.api.shapes import ApiLinks, read_user_albums
    from workers.api.urls import base_url
    from workers.runtime import presign_client

    links = ApiLinks(base_url(get_settings()), presign_client())
    with db_session() as session:
        return read_user_albums(session, links, user).model_dump_json(indent=2)


def register(app: typer.Typer) -> None:
    @app.command()
    def upload(
        paths: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Photo files to upload.")],
        user: Annotated[str, typer.Option("--user", "-u", help="Owner of the photos.")],
        wait: Annotated[bool, typer.Option(help="Wait until every photo is processed.")] = False,
        timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 120.0,
        unique: Annotated[bool, typer.Option(help="Prefix keys with a random id (repeat uploads).")] = False,
    ) -> None:
        """Upload photos into the photos bucket as the photo service would (owner in x-amz-meta-user)."""
        bucket = get_settings().s3.photos_bucket
        uploaded = upload_photos(minio_client(), bucket, user, list(paths), unique=unique)
        for obj in uploaded:
            console.print(f"uploaded [bold]{obj.path}[/] -> s3://{obj.bucket}/{obj.key}")
        if wait:
            statuses = wait_for_photos(bucket, [o.key for o in uploaded], timeout)
            for key, status in statuses.items():
                console.print(f"{status:>10}  {key}")
            if any(s not in ("done", "failed", "deleted") for s in statuses.values()):
                raise typer.Exit(1)

    @app.command()
    def albums(
        user: Annotated[str, typer.Option("--user", "-u", help="Whose albums.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Print a user's landmark albums, grouped by city, with their photos (--json: the API's album shape)."""
        if as_json:
            typer.echo(albums_json(user))
            return
        with db_session() as session:
            grouped = list_albums(session, user)
        if not grouped:
            console.print(f"[yellow]{user} has no landmark albums yet.[/]")
            return
        for city, items in grouped.items():
            table = Table(title=f"{user} - {city}", title_justify="left")
            table.add_column("Album")
            table.add_column("Photos", justify="right")
            table.add_column("Photo keys (score)")
            for album in items:
                keys = "\n".join(f"{p.key} ({p.score:.2f})" if p.score is not None else p.key for p in album.photos)
                table.add_row(album.landmark_name, str(album.photo_count), keys)
            console.print(table)
