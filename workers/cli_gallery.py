"""`landmarks gallery ...` and `landmarks model ...`: building the landmark database and its model versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from shared import registry
from shared.gallery import import_rows
from shared.model_build import build_model
from shared.recognition.evaluation import read_eval_manifest
from shared.settings import get_settings
from shared.storage import ensure_buckets
from workers.runtime import db_session, minio_client, session_factory

console = Console()
gallery_app = typer.Typer(no_args_is_help=True, help="The landmark gallery: import, references, cleaning.")
model_app = typer.Typer(no_args_is_help=True, help="Model versions: build, list, activate, roll back.")


@gallery_app.command("import")
def gallery_import(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV as for `landmarks eval`.")],
    split: Annotated[list[str], typer.Option(help="Manifest splits to import (repeatable).")] = ["train"],  # noqa: B006
) -> None:
    """Import landmarks and photos from a manifest: photos to the gallery bucket, rows to PostgreSQL."""
    settings = get_settings()
    rows = read_eval_manifest(manifest)
    client = minio_client()
    ensure_buckets(client, [settings.s3.gallery_bucket])
    with Progress(console=console) as progress, db_session() as session:
        task = progress.add_task("importing", total=len(rows))
        report = import_rows(
            session,
            client,
            settings.s3.gallery_bucket,
            rows,
            splits=split,
            progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"landmarks created: {report.landmarks_created}; photos added: {report.photos_added} "
        f"(already known: {report.photos_known}); negatives added: {report.negatives_added}; "
        f"objects uploaded: {report.objects_uploaded}"
    )


@model_app.command("build")
def model_build(
    activate: Annotated[bool, typer.Option(help="Activate the new version at once.")] = False,
) -> None:
    """Build a model version from the gallery (backbone features, centroids, calibrated thresholds)."""
    from shared.model import Embedder, EmbedderConfig

    settings = get_settings()
    rec = settings.recognition
    config = EmbedderConfig()
    embedder = Embedder(config, device=rec.device, batch_size=rec.batch_size, weights_path=rec.weights_path)
    client = minio_client()
    ensure_buckets(client, [settings.s3.models_bucket])
    with Progress(console=console) as progress:
        task = progress.add_task("embedding gallery", total=None)
        row = build_model(
            session_factory(),
            client,
            embedder,
            models_bucket=settings.s3.models_bucket,
            model_store=settings.model_store,
            min_side=int(config.image_size * max(config.scales)),
            activate=activate,
            rejection=rec.non_landmark_rejection,
            progress=lambda n: progress.advance(task, n),
        )
    console.print(f"built model version [bold]{row.version}[/] ({row.status.value}): {json.dumps(row.metrics)}")
    console.print(f"thresholds: {json.dumps(row.thresholds)}")


@model_app.command("list")
def model_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Model versions, newest last."""
    with db_session() as session:
        rows = registry.list_versions(session)
        data = [
            {
                "version": r.version,
                "status": r.status.value,
                "backbone": r.backbone,
                "created_at": r.created_at.isoformat(),
                "metrics": r.metrics,
                "thresholds": r.thresholds,
            }
            for r in rows
        ]
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table("version", "status", "backbone", "created", "landmarks", "centroids")
    for d in data:
        table.add_row(
            d["version"],
            d["status"],
            d["backbone"],
            d["created_at"][:19],
            str(d["metrics"].get("landmarks", "")),
            str(d["metrics"].get("centroids", "")),
        )
    console.print(table)


@model_app.command("activate")
def model_activate(version: str) -> None:
    """Make VERSION the active model; workers switch to it before their next photo, without a restart."""
    try:
        with db_session() as session:
            row = registry.activate(session, version)
    except registry.UnknownModelVersion as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"active model: [bold]{row.version}[/]")


@model_app.command("rollback")
def model_rollback() -> None:
    """Re-activate the version that was active before the current one."""
    try:
        with db_session() as session:
            row = registry.rollback(session)
    except registry.UnknownModelVersion as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"rolled back; active model: [bold]{row.version}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(gallery_app, name="gallery")
    app.add_typer(model_app, name="model")

    @app.command()
    def reconcile(
        wait: Annotated[bool, typer.Option(help="Run here instead of enqueueing on the ingest queue.")] = False,
    ) -> None:
        """The reconciliation sweep: enqueue objects without a photo row and photos whose task was lost."""
        import workers.celery_app  # noqa: F401  (the app the task is sent through)
        from tasks.ingest import reconcile as reconcile_task
        from tasks.ingest import reconcile_bucket

        if wait:
            console.print(reconcile_bucket(get_settings().s3.photos_bucket))
        else:
            console.print(f"enqueued reconciliation: {reconcile_task.delay().id}")
