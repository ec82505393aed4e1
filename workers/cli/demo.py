"""`landmarks demo prepare`: the demo's sample photos from Debian's gcompris-qt-data (see :mod:`devtools.demo_data`)."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from devtools import demo_data
from workers.cli.tables import print_table

if TYPE_CHECKING:
    from shared.settings import Settings

app = typer.Typer(no_args_is_help=True)


SUMMARY_LABELS = ("right album", "WRONG album", "missed (no album)", "correctly no album", "not processed")


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
    table.add_row("calibration: landmarks not in the gallery", str(data.unknown_landmark_photos), "unknown/")
    for user, count in sorted(users.items()):
        table.add_row(f"uploads of {user} ({known[user]} of gallery landmarks)", str(count), f"uploads/{user}/")
    table.add_row("gallery manifest", "", data.gallery_csv.name)
    table.add_row("uploads and expected landmarks", "", data.uploads_csv.name)
    table.add_row("evaluation manifest (gallery + uploads as test)", "", data.eval_csv.name)
    table.add_row("authors and licences", "", data.attribution.name)
    print_table(Console(), table)


@app.command()
def run(
    rebuild: Annotated[bool, typer.Option(help="Build a new model even if one is active.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the uploads to be processed.")] = 300.0,
) -> None:
    """The main job on sample data: gallery -> model -> uploads for two users -> the albums the workers built.

    Needs the stack running (`landmarks dev up`): uploads go through the real bucket, event bridge and workers.
    """
    from sqlalchemy import select

    from shared.db.models import Landmark, Photo, Recognition
    from shared.photos.albums import list_albums
    from shared.photos.uploads import upload_photos
    from shared.settings import get_settings
    from shared.versions import registry
    from workers.cli import gallery as cli_gallery
    from workers.cli import model as cli_model
    from workers.cli.photos import wait_for_photos
    from workers.runtime import db_session, minio_client

    console = Console()
    settings = get_settings()
    data = demo_data.prepare_demo(demo_data.DEFAULT_RCC_DIR, default_out_dir())
    console.rule("1. gallery")
    cli_gallery.gallery_import(manifest=data.gallery_csv, split=["train"])
    console.rule("2. model")
    with db_session() as session:
        active = registry.active_version(session)
    if active is None or rebuild:
        cli_model.model_build(activate=True)
    else:
        console.print(f"active model {active.version} (use --rebuild for a new one)")
    console.rule("3. uploads")
    bucket = settings.s3.photos_bucket
    keys: dict[str, tuple[str, str]] = {}
    for user in sorted({u.user for u in data.uploads}):
        mine = [u for u in data.uploads if u.user == user]
        for obj, upload in zip(upload_photos(minio_client(), bucket, user, [u.path for u in mine]), mine, strict=True):
            keys[obj.key] = (user, upload.expected_landmark)
        console.print(f"uploaded {len(mine)} photos for {user}")
    statuses = wait_for_photos(bucket, list(keys), timeout)
    stale = _reprocess_stale([u for u in sorted({u for u, _ in keys.values()})], timeout)
    if stale:
        console.print(f"reprocessed {stale} photos recognised by an older model")
    console.rule("4. albums")
    for user in sorted({u for u, _ in keys.values()}):
        with db_session() as session:
            grouped = list_albums(session, user)
        for city, albums in grouped.items():
            for album in albums:
                names = ", ".join(p.key.rsplit("/", 1)[-1] for p in album.photos)
                console.print(
                    f"[bold]{user}[/] · {city} · [green]{album.landmark_name}[/] ({album.photo_count}): {names}"
                )
    with db_session() as session:
        got = dict(
            session.execute(
                select(Photo.key, Recognition.landmark_id)
                .join(
                    Recognition,
                    (Recognition.photo_id == Photo.id) & (Recognition.model_version_id == Photo.model_version_id),
                )
                .where(Photo.bucket == bucket, Photo.key.in_(list(keys)), Recognition.rank == 0)
            ).all()
        )
        slugs = dict(session.execute(select(Landmark.id, Landmark.slug)).all())
    tally = Counter()
    for key, (_, expected) in keys.items():
        predicted = slugs.get(got.get(key)) or ""
        if statuses.get(key) != "done":
            tally["not processed"] += 1
        elif expected and predicted == expected:
            tally["right album"] += 1
        elif expected and not predicted:
            tally["missed (no album)"] += 1
        elif predicted and predicted != expected:
            tally["WRONG album"] += 1
        else:
            tally["correctly no album"] += 1
    console.rule("5. summary")
    for label in SUMMARY_LABELS:  # every line, zeros too: "WRONG album: 0" is the figure that matters most
        console.print(f"{label:>20}: {tally[label]}")
    for line in closing_lines(settings, sorted({u for u, _ in keys.values()}), data.uploads):
        console.print(line, soft_wrap=True, markup=False, highlight=False)  # a URL cut in two cannot be clicked
    if tally["not processed"]:
        raise typer.Exit(1)


def closing_lines(settings: Settings, users: list[str], uploads: Sequence[demo_data.DemoUpload]) -> list[str]:
    """The demo's last words: where to look (Flower, each user's album page) and, last, what to try next."""
    from workers.api import album_page_url

    lines = [f"Flower (workers, queues): http://127.0.0.1:{settings.flower.port}"]
    lines += [f"Album page of {user}: {album_page_url(settings, user)}" for user in users]
    example = next((u.path for u in uploads if u.expected_landmark), None)
    photo = shlex.quote(str(example)) if example else "PHOTO.jpg"
    lines.append(f"Recognise a photo of your own with the active model: landmarks recognize {photo}")
    return lines


def _reprocess_stale(users: list[str], timeout: float) -> int:
    """Photos of these users processed by an older model are recognised again (a re-run after --rebuild): a job
    per user, fed at once (the demo does not wait for beat), then followed until each is done or failed again."""
    import time
    from functools import partial

    from shared.ops import jobs
    from shared.ops.selectors import PhotoSelector
    from workers.celery_app import LIVE_PRIORITY
    from workers.celery_app import app as celery_app
    from workers.fleet import send_recognitions
    from workers.runtime import db_session, session_factory

    total = 0
    enqueue = partial(send_recognitions, celery_app, priority=LIVE_PRIORITY)
    for user in users:
        selector = PhotoSelector(user=user, stale=True)
        with db_session() as session:
            job = jobs.create_job(session, selector, priority=LIVE_PRIORITY, created_by="landmarks demo")
        jobs.feed_job(session_factory(), job.id, depth=lambda: 0, enqueue=enqueue, bound=10**6)
        deadline = time.monotonic() + timeout
        while job.total and time.monotonic() < deadline:
            with db_session() as session:
                if jobs.processed_since(session, job) >= job.total:
                    break
            time.sleep(0.3)
        total += job.total or 0
    return total
