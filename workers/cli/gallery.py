"""`landmarks gallery ...` and `landmarks reconcile`: building the landmark database (imports, references,
cleaning, sharing) and the sweep; model versions are :mod:`workers.cli.model`'s."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from workers.cli.errors import service_errors
from workers.cli.tables import print_table

if TYPE_CHECKING:
    from shared.gallery.cleaning import CleaningReport

# The gallery, model-build, registry and storage modules are imported inside each command: they pull in scipy,
# faiss and torch, and every `landmarks` command (`--help` included) would pay for them at start.

console = Console()
gallery_app = typer.Typer(no_args_is_help=True, help="The landmark gallery: import, references, cleaning.")
refs_app = typer.Typer(no_args_is_help=True, help="Hand-picked reference photos of each landmark.")
gallery_app.add_typer(refs_app, name="refs")


@gallery_app.command("import")
def gallery_import(
    manifest: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="CSV as for `landmarks eval` (optional `reference` column)."),
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="Tree <slug>/<photos> (<slug>/references/, _negatives/)."),
    ] = None,
    landmarks: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="With --folder: CSV slug,name,city,country,lat,lon."),
    ] = None,
    gldv2: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="Google Landmarks v2: train.csv, train/a/b/c/<id>.jpg."),
    ] = None,
    split: Annotated[list[str], typer.Option(help="Manifest splits to import (repeatable).")] = ["train"],  # noqa: B006
) -> None:
    """Import landmarks and photos from one source: photos to the gallery bucket, rows to PostgreSQL."""
    from shared.gallery import formats as gallery_formats
    from shared.gallery.catalog import import_rows
    from shared.settings import get_settings
    from shared.storage import ensure_buckets
    from workers.runtime import db_session, minio_client

    if sum(x is not None for x in (manifest, folder, gldv2)) != 1:
        raise typer.BadParameter("give exactly one of --manifest, --folder (with --landmarks) or --gldv2")
    if (folder is None) != (landmarks is None):
        raise typer.BadParameter("--folder and --landmarks go together")
    try:
        if manifest is not None:
            read = gallery_formats.read_manifest(manifest)
        elif folder is not None and landmarks is not None:
            read = gallery_formats.read_folder(folder, landmarks)
        else:
            assert gldv2 is not None
            read = gallery_formats.read_gldv2(gldv2)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    for line in read.skipped:
        console.print(f"[yellow]skipped:[/] {line}")
    settings = get_settings()
    client = minio_client()
    ensure_buckets(client, [settings.s3.gallery_bucket])
    with Progress(console=console) as progress, db_session() as session:
        task = progress.add_task("importing", total=len(read.rows))
        report = import_rows(
            session,
            client,
            settings.s3.gallery_bucket,
            read.rows,
            splits=split,
            progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"landmarks created: {report.landmarks_created}; photos added: {report.photos_added} "
        f"(already known: {report.photos_known}); references set: {report.references_set}; "
        f"negatives added: {report.negatives_added}; unknown landmarks added: {report.unknown_landmarks_added}; "
        f"objects uploaded: {report.objects_uploaded}"
    )


@refs_app.command("set")
def refs_set(
    landmark: Annotated[str, typer.Argument(help="Landmark slug.")],
    photos: Annotated[list[str], typer.Argument(help="Local files (imported if new) or gallery keys.")],
) -> None:
    """Make PHOTO... the landmark's hand-picked references (3-5, as in the Mail.ru pipeline), and only them."""
    from shared.gallery.catalog import UnknownGalleryPhoto, UnknownLandmark, set_references
    from shared.settings import get_settings
    from workers.runtime import db_session, minio_client

    settings = get_settings()
    client = minio_client()
    items: list[Path | str] = [Path(p) if Path(p).is_file() else p for p in photos]
    if not 3 <= len(items) <= 5:
        console.print(f"[yellow]warning:[/] {len(items)} reference photo(s); 3-5 per landmark work best")
    try:
        with service_errors(), db_session() as session:
            result = set_references(session, client, settings.s3.gallery_bucket, landmark, items)
    except (UnknownLandmark, UnknownGalleryPhoto) as exc:
        console.print(f"[red]error:[/] {exc.args[0]}")
        raise typer.Exit(1) from exc
    console.print(
        f"{landmark}: {len(result.keys)} reference(s) ({result.added} new, {result.demoted} former back to train, "
        f"{result.objects_uploaded} uploaded)"
    )
    for key in result.keys:
        console.print(f"  {key}")


@refs_app.command("list")
def refs_list(
    landmark: Annotated[str | None, typer.Argument(help="Landmark slug (all landmarks when left out).")] = None,
) -> None:
    """Reference photos per landmark; model builds use hand-picked ones only when every landmark has them."""
    from shared.gallery.catalog import UnknownLandmark, list_references
    from workers.runtime import db_session

    try:
        with service_errors(), db_session() as session:
            rows = list_references(session, landmark)
    except UnknownLandmark as exc:
        console.print(f"[red]error:[/] {exc.args[0]}")
        raise typer.Exit(1) from exc
    table = Table("landmark", "name", "refs", "reference photos")
    for lm in rows:
        keys = "\n".join(f"{p.key}" + (f" (s3://{p.bucket})" if p.source == "mined" else "") for p in lm.photos)
        table.add_row(lm.slug, lm.name, str(len(lm.photos)), keys or "[dim]none: picked per build[/]")
    print_table(console, table)
    with_refs = sum(bool(lm.photos) for lm in rows)
    console.print(f"{with_refs} of {len(rows)} landmark(s) have hand-picked references")


@gallery_app.command("share")
def gallery_share(
    user: Annotated[str, typer.Argument(help="User name.")],
    off: Annotated[bool, typer.Option("--off", help="Stop sharing: withdraw the user's rows at once.")] = False,
) -> None:
    """Let USER's photos join the gallery (mined candidates, corrections), or with --off stop and withdraw them."""
    from shared.gallery import mining
    from workers.runtime import db_session

    try:
        with db_session() as session:
            withdrawn = mining.set_sharing(session, user, shares=not off)
    except LookupError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{user}: {'not sharing' if off else 'sharing'}; {withdrawn} gallery rows withdrawn")


@gallery_app.command("clean")
def gallery_clean(
    wait: Annotated[bool, typer.Option(help="Run here and print the report instead of enqueueing.")] = False,
    landmark: Annotated[str | None, typer.Option(help="Only this landmark (slug).")] = None,
    include_rejected: Annotated[bool, typer.Option(help="Judge rejected photos again too.")] = False,
) -> None:
    """Reject gallery photos far from their landmark's references (role rejected; objects are kept)."""
    from shared.gallery.catalog import UnknownLandmark
    from shared.settings import get_settings
    from workers.runtime import minio_client, session_factory

    settings = get_settings()
    if not wait:
        from workers.celery_app import app as celery_app

        kwargs = {"landmark": landmark, "include_rejected": include_rejected}
        result = celery_app.send_task("cleaning.clean_gallery", kwargs=kwargs)  # routed by name to its queue
        console.print(f"enqueued gallery cleaning on the cleaning queue: {result.id}")
        return
    from shared.gallery.cleaning import run_cleaning

    try:
        with Progress(console=console) as progress:
            task = progress.add_task("embedding gallery", total=None)
            report = run_cleaning(
                settings,
                session_factory(),
                minio_client(),
                landmark=landmark,
                include_rejected=include_rejected,
                progress=lambda n: progress.advance(task, n),
            )
    except UnknownLandmark as exc:
        console.print(f"[red]error:[/] {exc.args[0]}")
        raise typer.Exit(1) from exc
    print_cleaning_report(report)


def print_cleaning_report(report: CleaningReport) -> None:
    table = Table("landmark", "kept", "rejected", "accepted", "failed", "left", "references")
    for lm in report.landmarks:
        table.add_row(
            lm.slug, str(lm.kept), str(lm.rejected), str(lm.accepted), str(lm.failed), str(lm.left),
            f"{lm.references} {lm.reference_source}",
        )  # fmt: skip
    print_table(console, table)
    console.print(
        f"kept {report.kept}, rejected {report.rejected} (mean cosine distance to the references above "
        f"{report.max_distance}); mined photos withdrawn: {report.withdrawn}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(gallery_app, name="gallery")

    @app.command()
    def reconcile(
        wait: Annotated[bool, typer.Option(help="Run here instead of enqueueing on the ingest queue.")] = False,
    ) -> None:
        """The reconciliation sweep: enqueue objects without a photo row and photos whose task was lost."""
        from shared.ops.sweep import reconcile_bucket
        from shared.settings import get_settings
        from workers.celery_app import REPROCESS_PRIORITY
        from workers.celery_app import app as celery_app
        from workers.fleet import INGEST_TASK, send_recognitions
        from workers.runtime import minio_client, session_factory

        if not wait:
            console.print(f"enqueued reconciliation: {celery_app.send_task('ingest.reconcile').id}")
            return
        settings = get_settings()
        report = reconcile_bucket(
            session_factory(),
            minio_client(),
            settings.s3.photos_bucket,
            send_event=lambda record: celery_app.send_task(INGEST_TASK, args=[record]),
            requeue=lambda ids: send_recognitions(celery_app, ids, priority=REPROCESS_PRIORITY),
            page_size=settings.sweep_page_size,
            max_delete_share=settings.sweep_max_delete_share,
            stuck_after_s=settings.stuck_after_s,
        )
        console.print(report.summary())
