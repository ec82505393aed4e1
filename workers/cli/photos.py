"""`landmarks upload` and `landmarks albums`: the photo service's side, for demos and operators."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.db.enums import PhotoStatus
from workers.cli.errors import service_errors
from workers.cli.tables import print_table

if TYPE_CHECKING:
    from shared.photos.albums import PhotoPlacement

# SQLAlchemy, MinIO and the album queries load inside the commands: `landmarks --help` does not pay for them.
console = Console()
FINAL = (PhotoStatus.done, PhotoStatus.failed, PhotoStatus.deleted)


def describe_placement(placement: PhotoPlacement) -> str:
    """Where the photo went, in words: its album(s) and city, "no landmark", or why it failed."""
    if placement.status == PhotoStatus.done:
        if not placement.albums:
            return "no landmark"
        return "; ".join(f"album {name} ({city})" for name, city in placement.albums)
    if placement.status == PhotoStatus.failed:
        return f"failed: {placement.error or 'no reason recorded'}"
    if placement.status == PhotoStatus.deleted:
        return "deleted before it was recognised"
    if placement.status == "missing":
        return "not seen by the workers yet (is the event bridge running?)"
    return f"still {placement.status}"


def wait_for_photos(bucket: str, keys: list[str], timeout_s: float) -> dict[str, str]:
    """Poll until every key has a photo row in a final state; returns key -> status (``missing`` if none)."""
    from sqlalchemy import select

    from shared.db.models import Photo
    from workers.runtime import db_session

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
    from shared.settings import get_settings
    from workers.api.shapes import ApiLinks, read_user_albums
    from workers.api.urls import base_url
    from workers.runtime import db_session, presign_client

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
        """Upload photos into the photos bucket as the photo service would (owner in x-amz-meta-user); with
        --wait, say where each one went: its album and city, "no landmark", or why it failed."""
        from shared.photos.albums import place_photos
        from shared.photos.uploads import upload_photos
        from shared.settings import get_settings
        from workers.runtime import db_session, minio_client

        settings = get_settings()
        bucket = settings.s3.photos_bucket
        with service_errors(settings.database_url):
            uploaded = upload_photos(minio_client(), bucket, user, list(paths), unique=unique)
        for obj in uploaded:
            console.print(f"uploaded [bold]{obj.path}[/] -> s3://{obj.bucket}/{obj.key}", soft_wrap=True)
        if wait:
            with service_errors(settings.database_url):
                statuses = wait_for_photos(bucket, [o.key for o in uploaded], timeout)
                with db_session() as session:
                    placed = place_photos(session, bucket, [o.key for o in uploaded])
            for obj in uploaded:
                where = describe_placement(placed[obj.key])
                console.print(f"{obj.path}: {where}", markup=False, highlight=False, soft_wrap=True)
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
        from shared.photos.albums import list_albums
        from shared.settings import get_settings
        from workers.runtime import db_session

        with service_errors(get_settings().database_url), db_session() as session:
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
            print_table(console, table)
