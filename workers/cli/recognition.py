"""`landmarks eval` and `landmarks recognize`: offline recognition commands (thin shells over shared.recognition)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from workers.cli.errors import fail, service_errors
from workers.cli.tables import print_table

if TYPE_CHECKING:
    from shared.settings import Settings

DEFAULT_POOLING = "gem"


def register(app: typer.Typer) -> None:
    """Attach the recognition commands to the top-level app."""
    app.command("eval")(eval_command)
    app.command("recognize")(recognize_command)


def _console() -> Console:
    return Console(stderr=False)


def eval_command(
    manifest: Annotated[Path, typer.Option("--manifest", help="Evaluation CSV (paths relative to it).")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    use_gps: Annotated[bool, typer.Option("--use-gps", help="Use EXIF GPS (geo decision) where present.")] = False,
    backbone: Annotated[str | None, typer.Option("--backbone", help="Backbone name (default: settings).")] = None,
    pooling: Annotated[str | None, typer.Option("--pooling", help="gem | avg (default: settings).")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Network input size (long side).")] = None,
    resize: Annotated[str, typer.Option("--resize", help="long | square | crop.")] = "long",
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate an even sample of N rows.")] = None,
    no_margin: Annotated[bool, typer.Option("--no-margin", help="Skip the best-vs-runner-up margin test.")] = False,
    no_landmark_thresholds: Annotated[
        bool, typer.Option("--no-landmark-thresholds", help="One global verification threshold only.")
    ] = False,
    verification_k: Annotated[int, typer.Option("--verification-k", help="References voting per landmark.")] = 3,
    shortlist: Annotated[int, typer.Option("--shortlist", help="Landmarks verified per photo.")] = 10,
    distance: Annotated[float, typer.Option("--cluster-distance", help="Complete-link cut (cosine).")] = 0.6,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")] = False,
    save_bundle_dir: Annotated[
        Path | None, typer.Option("--save-bundle", help="Also write the evaluated bundle to this new folder.")
    ] = None,
    train: Annotated[bool, typer.Option("--train", help="Train the head on the train rows first.")] = False,
    loss: Annotated[str, typer.Option("--loss", help="With --train: center | arcface | cosface.")] = "center",
    epochs: Annotated[int, typer.Option("--epochs", min=0, help="With --train: epochs of the last stage.")] = 30,
    mode: Annotated[
        str, typer.Option("--mode", help="With --train: features (cached) | finetune (also the last backbone blocks).")
    ] = "features",
    blocks: Annotated[int, typer.Option("--blocks", min=1, help="With --mode finetune: backbone blocks to tune.")] = 2,
    finetune_epochs: Annotated[
        int, typer.Option("--finetune-epochs", min=1, help="With --mode finetune: epochs of backbone tuning.")
    ] = 5,
    cached_views: Annotated[
        int,
        typer.Option(
            "--cached-views",
            min=0,
            help="With --mode finetune: run the frozen blocks once on this many augmented views per photo (fast on "
            "a CPU); 0 augments afresh every epoch.",
        ),
    ] = 0,
    holdout_landmarks: Annotated[
        int,
        typer.Option(
            "--holdout-landmarks",
            min=0,
            help="Open set: hold this many landmarks out of the gallery; their test photos must get no album.",
        ),
    ] = 0,
    holdout_seed: Annotated[int, typer.Option("--holdout-seed", help="Seed of the first held-out draw.")] = 0,
    holdout: Annotated[
        str | None, typer.Option("--holdout", help="Open set: hold out these landmarks (comma-separated slugs).")
    ] = None,
    unknown_rejection: Annotated[
        float | None,
        typer.Option(
            "--unknown-rejection",
            min=0.0,
            max=0.999,
            help="Share of left-out-landmark stand-ins the open-set score turns away (default: settings; 0: off).",
        ),
    ] = None,
    whiten: Annotated[
        int | None,
        typer.Option("--whiten", min=0, help="Whitening dims of the gallery (default: settings; 0: raw features)."),
    ] = None,
    holdout_repeats: Annotated[
        int, typer.Option("--holdout-repeats", min=1, help="Seeded held-out splits (seed, seed+1, ...): mean, spread.")
    ] = 1,
) -> None:
    """Offline evaluation: build from the train rows, calibrate on train non-landmarks, score the test rows.

    Every report also gives the open-set figures: unknown-landmark photos (held out with --holdout-landmarks or
    --holdout, or marked "unknown landmark" in the manifest's notes) turned away, everyday photos turned away, known
    landmarks right and wrong, and the operating curve."""
    from shared.evaluation.open_set import apply_holdout, holdout_splits, summarize
    from shared.evaluation.recognition import EvalOptions, embed_rows, evaluate_embeddings
    from shared.gallery.manifest import read_eval_manifest
    from shared.imaging.decode import fit_for_resize
    from shared.model.factory import config_from_settings, decode_side, embedder_from_settings
    from shared.recognition.whitening import whitening_options
    from shared.settings import get_settings

    settings = get_settings()
    rec = settings.recognition
    config = config_from_settings(rec, backbone=backbone, pooling=pooling, image_size=image_size, resize=resize)
    try:
        rows = read_eval_manifest(manifest, limit=limit)
        named = [slug.strip() for slug in (holdout or "").split(",") if slug.strip()]
        splits = holdout_splits(
            rows, landmarks=named, count=holdout_landmarks, seed=holdout_seed, repeats=holdout_repeats
        )
        for held in splits:
            apply_holdout(rows, held)  # refuses unknown slugs before anything is embedded
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    embedder = embedder_from_settings(rec, config=config)
    min_side = decode_side(config)
    options = EvalOptions(
        use_gps=use_gps,
        rejection=rec.non_landmark_rejection,
        distance_threshold=distance,
        margin_share=0.0 if no_margin else 0.5,
        landmark_rejection=None if no_landmark_thresholds else 1.0,
        verification_k=verification_k,
        shortlist=shortlist,
        geo_radius_km=rec.geo_radius_km,
        top_k=rec.top_k,
        unknown_rejection=(rec.unknown_rejection if unknown_rejection is None else unknown_rejection) or None,
        whitening=whitening_options(rec.whitening_dim if whiten is None else whiten),
    )
    if train:
        from workers.cli.model import check_options

        check_options(loss, mode)
    console = _console()
    embedded = None
    if not (train and mode == "finetune"):  # tuned features are embedded inside, never from the cache
        cache = None if no_cache else settings.state_dir / "embeddings" / embedder.cache_key()
        with console.status("embedding photos") as status:
            embedded = embed_rows(
                rows,
                embedder,
                cache_dir=cache,
                min_side=min_side,
                fit=fit_for_resize(config.resize, config.decode_fit),
                max_pixels=rec.max_pixels,
                batch_size=rec.batch_size,
                progress=lambda done, total: status.update(f"embedding photos {done}/{total}"),
            )
    reports = []
    for held in splits:
        split_rows, kept = apply_holdout(rows, held)
        if embedded is None:
            from workers.cli.model import run_eval_finetune

            report = run_eval_finetune(
                split_rows,
                embedder,
                options,
                loss=loss,
                epochs=epochs,
                blocks=blocks,
                finetune_epochs=finetune_epochs,
                cached_views=cached_views,
                min_side=min_side,
                max_pixels=rec.max_pixels,
                device=rec.device,
                weights_path=rec.weights_path,
            )
        elif train:  # training lives in workers.cli.model / shared.training
            from workers.cli.model import run_eval_train

            split_embedded = embedded.subset(kept)
            report = run_eval_train(split_rows, split_embedded, embedder.describe(), options, loss=loss, epochs=epochs)
        else:
            save_to = save_bundle_dir if len(splits) == 1 else None
            split_embedded = embedded.subset(kept)
            report = evaluate_embeddings(split_rows, split_embedded, embedder.describe(), options, save_to=save_to)
        report["held_out"] = list(held)
        reports.append(report)
        _print_report(console, report)
    if len(reports) > 1:
        report = {"splits": reports, "open_set": summarize([r["open_set"] for r in reports])}
        _print_open_set_summary(console, report["open_set"], [r["held_out"] for r in reports])
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, default=str))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _print_report(console: Console, report: dict[str, Any]) -> None:
    table = Table(title="landmarks eval", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (
        "landmark_accuracy",
        "non_landmark_accuracy",
        "wrong_landmark",
        "missed_landmark",
        "false_accepts",
        "precision",
        "recall",
        "ms_per_photo",
    ):
        table.add_row(key, _fmt(report.get(key)))
    for key, value in report["thresholds"].items():
        if isinstance(value, dict):
            vals = list(value.values())
            text = f"{len(vals)} landmarks, {min(vals):.4f}..{max(vals):.4f}" if vals else "-"
            table.add_row(f"threshold.{key}", text)
        else:
            table.add_row(f"threshold.{key}", _fmt(value))
    for key, value in report["counts"].items():
        table.add_row(f"count.{key}", _fmt(value))
    for key, value in report.get("finetune", {}).get("without_head", {}).items():
        table.add_row(f"tuned features, no head: {key}", _fmt(value))
    print_table(console, table)
    if "open_set" in report:
        _print_open_set(console, report["open_set"], report.get("held_out") or [])


def _print_open_set(console: Console, figures: dict[str, Any], held: list[str]) -> None:
    """The open-set figures in a table of their own (landmarks the gallery does not know)."""
    title = "open set" + (f" (held out: {', '.join(held)})" if held else "")
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        if isinstance(value, dict):
            for part, count in value.items():
                table.add_row(f"{key}.{part}", _fmt(count))
        else:
            table.add_row(key, _fmt(value))
    print_table(console, table)


def _print_open_set_summary(console: Console, summary: dict[str, Any], held: list[list[str]]) -> None:
    table = Table(title=f"open set over {summary['splits']} splits (held out: {'; '.join(', '.join(h) for h in held)})")
    for col in ("metric", "mean", "min", "max"):
        table.add_column(col, justify="right")
    for key, mean in summary["mean"].items():
        table.add_row(key, _fmt(mean), _fmt(summary["min"][key]), _fmt(summary["max"][key]))
    print_table(console, table)


def recognize_command(
    paths: Annotated[list[Path], typer.Argument(help="Photos to recognise.")],
    bundle_dir: Annotated[
        Path | None, typer.Option("--bundle", help="Model bundle folder (default: the active model version).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per photo.")] = False,
    explain: Annotated[
        Path | None, typer.Option("--explain", help="Write the (first) photo with a heat map of the match.")
    ] = None,
) -> None:
    """Recognise local photos with the active model version (fetched from the models bucket and cached by hash,
    as workers do) or a bundle folder; with a trained bundle the presence gate's logit is shown (``gate`` in the
    JSON: logit, threshold, vetoed)."""
    from shared.imaging import ImageDecodeError, decode_photo
    from shared.recognition import BundleIntegrityError, Recognizer, load_bundle
    from shared.settings import get_settings

    settings = get_settings()
    rec = settings.recognition
    if bundle_dir is not None and not bundle_dir.exists():
        typer.echo(f"error: no model bundle at {bundle_dir}", err=True)
        raise typer.Exit(1)
    try:
        folder = bundle_dir or active_bundle(settings)
        bundle = load_bundle(folder)
    except BundleIntegrityError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    recognizer = Recognizer.from_bundle(bundle, rec)
    console = _console()
    table = Table(title=f"model {bundle.version}")
    gated = recognizer.gate is not None  # a trained bundle's presence gate: its logit is shown too
    for col in ("photo", "landmark", "name", "city", "score", "method", "runner-up", *(("gate",) if gated else ())):
        table.add_column(col)
    failed = 0
    for i, path in enumerate(paths):
        try:
            photo = decode_photo(path, min_side=recognizer.min_side, fit=recognizer.fit, max_pixels=rec.max_pixels)
        except (ImageDecodeError, OSError) as exc:
            failed += 1
            typer.echo(f"error: {path}: {exc}", err=True)
            continue
        result = recognizer.recognize([photo])[0]
        info = recognizer.describe(result)
        if as_json:
            typer.echo(json.dumps({"path": str(path), **info}))
        else:
            ru = info["runner_up"]
            gate = info.get("gate")
            table.add_row(
                str(path),
                info["landmark"] or "-",
                info["name"] or "-",
                info["city"] or "-",
                _fmt(info["score"]),
                f"{info['method']} (gate veto)" if gate and gate["vetoed"] else info["method"],
                f"{ru['landmark']} {ru['score']:.4f}" if ru else "-",
                *((f"{gate['logit']:.2f} (threshold {gate['threshold']:.2f})" if gate else "-",) if gated else ()),
            )
        if explain and i == 0:
            _write_explanation(recognizer, photo.image, result, explain)
    if not as_json:
        print_table(console, table)
    if failed:
        raise typer.Exit(1)


def active_bundle(settings: Settings) -> Path:
    """The active version's bundle folder, through the workers' cache (``registry.fetch_bundle``); an error that
    names the service that did not answer, or says that no version is active."""
    import urllib3
    from minio.error import S3Error

    from shared.versions import registry
    from workers.runtime import db_session, minio_client

    with service_errors(settings.database_url), db_session() as session:
        active = registry.active_version(session)
        version = active.version if active is not None else None
    if version is None:
        raise fail("no active model version: run `landmarks model build --activate`, or pass --bundle DIR")
    bucket, s3 = settings.s3.models_bucket, settings.s3.endpoint
    try:
        return registry.fetch_bundle(version, minio_client(), bucket, settings.model_store)
    except S3Error as exc:
        raise fail(f"model {version}: s3://{bucket}/{version}/ on the S3 server at {s3}: {exc.code}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise fail(f"model {version}: the S3 server at {s3} is unreachable (`landmarks dev up`): {exc}") from exc
    except OSError as exc:
        raise fail(f"model {version}: cannot cache it under {settings.model_store}: {exc}") from exc


def _write_explanation(recognizer: Any, image: Any, result: Any, out: Path) -> None:
    """Heat map of similarity to the matched landmark's nearest centroid (or the best one when none matched)."""
    from shared.recognition.explain import overlay_heatmap

    lid = result.landmark_id if result.landmark_id is not None else (result.runner_up or (None,))[0]
    if lid is None:
        typer.echo("no landmark to explain", err=True)
        return
    emb = recognizer.embed([image])[0]
    rows = recognizer.bundle.centroid_landmarks == lid
    cents = recognizer.bundle.centroids[rows]
    target = cents[int((cents @ emb).argmax())]
    sim = recognizer.embedder.similarity_map(image, target)
    out.parent.mkdir(parents=True, exist_ok=True)
    overlay_heatmap(image, sim).save(out)
    typer.echo(f"explanation written to {out}", err=True)
