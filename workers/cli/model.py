"""`landmarks model ...`: model versions built, trained, listed, activated and rolled back, in one place (and the
training display that the body of `landmarks eval --train` shares).

`model train` without ``--wait`` is enqueued on the ``training`` queue (its own workers: never delays
recognition); with ``--wait`` it runs here with a progress bar. Both call
:func:`shared.training.service.train_from_options`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workers.cli.errors import service_errors
from workers.cli.tables import print_table

console = Console()
MODES = ("features", "finetune")
model_app = typer.Typer(no_args_is_help=True, help="Model versions: build, train, list, activate, roll back.")


def check_options(loss: str, mode: str) -> None:
    """Refuse an unknown loss or mode before anything is embedded, enqueued or trained."""
    from shared.training.losses import LOSSES  # torch: loaded by the commands that train, not at CLI start

    if loss not in LOSSES:
        raise typer.BadParameter(f"--loss must be one of {', '.join(LOSSES)}")
    if mode not in MODES:
        raise typer.BadParameter(f"--mode must be one of {', '.join(MODES)}")


def training_progress(progress: Progress) -> Any:
    """A :data:`shared.training.fit.ProgressFn` that drives a rich progress bar (one bar over all runs)."""
    task = progress.add_task("training", total=None)

    def update(p: Any) -> None:
        e = p.epoch
        if e is None:
            progress.update(task, description=f"{p.phase}")
            return
        progress.update(
            task,
            description=f"{p.phase} stage {e.stage}/{e.stages} epoch {e.epoch}/{e.epochs} loss {e.loss:.4f}",
            completed=(p.run - 1) + (e.epoch / e.epochs) * (e.stage / e.stages),
            total=p.runs,
        )

    return update


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console)


def model_train(
    wait: Annotated[bool, typer.Option(help="Train here (with a progress bar) instead of enqueueing.")] = False,
    loss: Annotated[str, typer.Option(help="center | arcface | cosface")] = "center",
    epochs: Annotated[int, typer.Option(min=1, help="Epochs of the final curriculum stage.")] = 30,
    mode: Annotated[
        str, typer.Option(help="features (cached backbone features) | finetune (also the last backbone blocks)")
    ] = "features",
    blocks: Annotated[int, typer.Option(min=1, help="With --mode finetune: backbone blocks to tune.")] = 2,
    cached_views: Annotated[
        int,
        typer.Option(
            min=0, help="With --mode finetune: augmented views per photo cached through the frozen blocks (0: none)."
        ),
    ] = 0,
    head: Annotated[
        bool,
        typer.Option(
            help="With --mode finetune: train the head on the tuned features; --no-head publishes the tuned "
            "backbone alone under the untrained decision (the model that keeps unknown landmarks out)."
        ),
    ] = True,
    folds: Annotated[int, typer.Option(min=2, help="Cross-fitting folds for the calibration.")] = 5,
    curriculum: Annotated[bool, typer.Option(help="Add one region per stage.")] = True,
    activate: Annotated[bool, typer.Option(help="Activate the new version when done.")] = False,
) -> None:
    """Train the embedding head on the gallery, calibrate out-of-fold, publish and register a model version."""
    check_options(loss, mode)
    options = {"loss": loss, "epochs": epochs, "mode": mode, "folds": folds, "curriculum": curriculum}
    if mode == "finetune":
        options["blocks"] = blocks
        options["cached_views"] = cached_views
        options["head"] = head
    if not wait:
        from workers.celery_app import app as celery_app

        # routed by name to the training queue
        result = celery_app.send_task("training.train_model", args=[options], kwargs={"activate": activate})
        console.print(f"enqueued training on the training queue: {result.id}")
        return
    from shared.settings import get_settings
    from shared.training.service import train_from_options
    from workers.runtime import minio_client, session_factory

    with progress_bar() as progress:
        row = train_from_options(
            get_settings(),
            session_factory(),
            minio_client(),
            options,
            activate=activate,
            progress=training_progress(progress),
        )
    console.print(f"trained model version [bold]{row.version}[/] ({row.status.value})")
    _warn_without_open_set(row.version, row.metrics)
    console.print(json.dumps({"thresholds": row.thresholds, "calibration": row.metrics.get("calibration")}))


def run_eval_train(
    rows: Sequence[Any], embedded: Any, model: dict[str, Any], options: Any, *, loss: str, epochs: int
) -> dict[str, Any]:
    """Body of ``landmarks eval --train``: the rows' cached embeddings (untrained network) train the head."""
    from shared.evaluation.trained_head import train_and_evaluate
    from shared.training.trainer import TrainConfig

    check_options(loss, "features")
    with progress_bar() as progress:
        report, _ = train_and_evaluate(
            rows, embedded, model, options, TrainConfig(loss=loss, epochs=epochs), progress=training_progress(progress)
        )
    return report


def run_eval_finetune(
    rows: Sequence[Any],
    embedder: Any,
    options: Any,
    *,
    loss: str,
    epochs: int,
    blocks: int,
    finetune_epochs: int,
    cached_views: int = 0,
    min_side: int,
    max_pixels: int,
    device: str,
    weights_path: Any = None,
) -> dict[str, Any]:
    """Body of ``landmarks eval --train --mode finetune``: tune the last ``blocks`` backbone blocks on the train
    landmark photos, re-embed every row, then train the head as ``--mode features`` does."""
    from shared.evaluation.finetune import finetune_and_evaluate
    from shared.training.service import FinetuneOptions
    from shared.training.trainer import TrainConfig

    with progress_bar() as progress:
        bar = training_progress(progress)
        embedding = progress.add_task("tuned embeddings", total=len(rows), visible=False)
        report, _ = finetune_and_evaluate(
            rows,
            embedder,
            options,
            TrainConfig(loss=loss, epochs=epochs),
            FinetuneOptions(blocks=blocks, device=device, weights_path=weights_path, cached_views=cached_views),
            finetune_epochs=finetune_epochs,
            min_side=min_side,
            max_pixels=max_pixels,
            progress=bar,
            embed_progress=lambda done, total: progress.update(embedding, completed=done, visible=True),
        )
    return report


@model_app.command("build")
def model_build(
    activate: Annotated[bool, typer.Option(help="Activate the new version at once.")] = False,
) -> None:
    """Build a model version from the gallery (backbone features, centroids, calibrated thresholds)."""
    from shared.imaging.decode import fit_for_resize
    from shared.model.factory import decode_side, embedder_from_settings
    from shared.recognition.whitening import whitening_options
    from shared.settings import get_settings
    from shared.storage import ensure_buckets
    from shared.versions.build import build_model
    from workers.runtime import minio_client, session_factory

    settings = get_settings()
    rec = settings.recognition
    embedder = embedder_from_settings(rec)  # the network cleaning and training embed with
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
            min_side=decode_side(embedder.config),
            fit=fit_for_resize(embedder.config.resize, embedder.config.decode_fit),
            activate=activate,
            rejection=rec.non_landmark_rejection,
            unknown_rejection=rec.unknown_rejection,
            whitening=whitening_options(rec.whitening_dim),
            progress=lambda n: progress.advance(task, n),
        )
    console.print(f"built model version [bold]{row.version}[/] ({row.status.value}): {json.dumps(row.metrics)}")
    console.print(f"thresholds: {json.dumps(row.thresholds)}")


@model_app.command("list")
def model_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Model versions, newest last."""
    from shared.versions import registry
    from workers.runtime import db_session

    with service_errors(), db_session() as session:
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
    table = Table("version", "status", "backbone", "created", "landmarks", "centroids", "open set")
    for d in data:
        # share of unknown-landmark stand-ins turned away: per left-out landmark where calibrated so, else per photo
        rejection = d["metrics"].get(
            "open_set_stand_in_landmark_rejection", d["metrics"].get("open_set_stand_in_rejection")
        )
        table.add_row(
            d["version"],
            d["status"],
            d["backbone"],
            d["created_at"][:19],
            str(d["metrics"].get("landmarks", "")),
            str(d["metrics"].get("centroids", "")),
            "-" if rejection is None else f"{rejection:.2f}",
        )
    print_table(console, table)


@model_app.command("activate")
def model_activate(
    version: str,
    reprocess: Annotated[
        bool, typer.Option("--reprocess", help="Start a job that recognises every photo again with it (--stale).")
    ] = False,
) -> None:
    """Make VERSION the active model; workers switch to it before their next photo, without a restart."""
    from shared.versions import registry
    from workers.runtime import db_session

    try:
        with service_errors(), db_session() as session:
            row = registry.activate(session, version)
    except registry.UnknownModelVersion as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"active model: [bold]{row.version}[/]")
    _warn_without_open_set(row.version, row.metrics)
    if reprocess:
        from shared.ops.selectors import PhotoSelector
        from workers.cli.ops import start_job

        job = start_job(PhotoSelector(stale=True))
        console.print(f"reprocess job {job.id}: {job.total} photos not yet recognised by {row.version}")


@model_app.command("rollback")
def model_rollback() -> None:
    """Re-activate the version that was active before the current one."""
    from shared.versions import registry
    from workers.runtime import db_session

    try:
        with service_errors(), db_session() as session:
            row = registry.rollback(session)
    except registry.UnknownModelVersion as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"rolled back; active model: [bold]{row.version}[/]")


def _warn_without_open_set(version: str, metrics: dict) -> None:
    from shared.versions.registry import open_set_warning

    warning = open_set_warning(version, metrics or {})
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")


def register(app: typer.Typer) -> None:
    """Mount the ``model`` group (``train`` included) on the top-level app; idempotent (tests register too)."""
    if not any(c.name == "train" for c in model_app.registered_commands):
        model_app.command("train")(model_train)
    app.add_typer(model_app, name="model")
