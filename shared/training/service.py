"""Train a model version from the gallery in PostgreSQL + object storage, publish and register it.

The service the Celery task and ``landmarks model train --wait`` both call. Pooled backbone features of gallery
objects are cached on disk by object key and content (the etag, read with a stat at training time): gallery rows
may point at users' photos, which can be overwritten under the same key, and old content must not keep
training. The second training run of the same gallery skips the backbone entirely.

``finetune`` mode (:class:`FinetuneOptions`) first tunes the last backbone blocks on the gallery's landmark
photos (augmented, :mod:`shared.training.finetune`), then trains and cross-fits the head exactly as ``features``
mode does, on features of the tuned backbone; the bundle carries the tuned tensors (``backbone.pt``). Tuning the
backbone once per fold would multiply the slowest step by the number of folds, so the backbone is tuned once; the
non-landmark photos stay out of it, which keeps the out-of-fold threshold calibration honest (the collapse
described in :mod:`shared.training.crossfit` comes from a network that has seen the calibration negatives).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from minio import Minio
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import ModelVersion
from shared.db.session import session_scope
from shared.imaging.batches import (
    MAX_GALLERY_OBJECT_BYTES,
    OBJECT_SKIPPED,
    decoded_batches,
    embed_objects,
    object_loader,
)
from shared.imaging.decode import Fit, fit_for_resize
from shared.index import l2_normalize
from shared.recognition.bundle import Bundle
from shared.recognition.recognizer import EmbedsImages
from shared.settings import Settings
from shared.storage import ObjectMissing, stat_object
from shared.training.curriculum import region_of
from shared.training.fit import FeatureDataset, ProgressFn, TrainingProgress, train_model
from shared.training.trainer import EpochReport, TrainConfig, TrainingData
from shared.versions import registry
from shared.versions.build import GallerySnapshot, bundle_from_gallery, gallery_snapshot, publish_bundle

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class FinetuneOptions:
    """``finetune`` mode: how many of the last backbone blocks to tune, on which device, from which weights;
    ``cached_views`` > 0 runs the frozen blocks once on that many augmented views per photo (fast on a CPU, see
    :mod:`shared.training.finetune`), 0 augments afresh every epoch. Without a ``head`` the tuned features go
    straight to the untrained decision: on the team's corpus that is the model that keeps unknown landmarks out
    (the fused head brings back the raw ImageNet feature that confuses them)."""

    blocks: int = 2
    device: str = "auto"
    weights_path: Path | None = None
    cached_views: int = 0
    head: bool = True  # False: publish the tuned backbone alone, decided and calibrated as an untrained model is


def _cache_path(cache_dir: Path, bucket: str, key: str, etag: str) -> Path:
    digest = hashlib.sha1(f"{bucket}/{key}@{etag}".encode()).hexdigest()
    return cache_dir / digest[:2] / f"{digest}.npy"


def cached_features(
    client: Minio,
    embedder: EmbedsImages,
    objects: Sequence[tuple[str, str]],
    *,
    cache_dir: Path | None,
    min_side: int,
    fit: Fit = "short",
    batch_size: int = 16,
) -> tuple[np.ndarray, list[int]]:
    """Pooled features (rows of the objects that decoded) and their indices, from the cache where possible."""
    vectors: dict[int, np.ndarray] = {}
    todo: list[int] = []
    paths: dict[int, Path] = {}
    for i, (bucket, key) in enumerate(objects):
        if cache_dir is not None:
            with contextlib.suppress(ObjectMissing):  # embed_objects reports it
                paths[i] = _cache_path(cache_dir, bucket, key, stat_object(client, bucket, key).etag)
        path = paths.get(i)
        if path is not None and path.is_file():
            vectors[i] = np.load(path)
        else:
            todo.append(i)
    if todo:
        todo_objects = [objects[i] for i in todo]
        fresh = embed_objects(client, embedder, todo_objects, min_side=min_side, fit=fit, batch_size=batch_size)
        for row, j in zip(fresh.embeddings, fresh.ok, strict=True):
            i = todo[j]
            vectors[i] = row
            path = paths.get(i)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, row)
                tmp.replace(path)
    ok = sorted(vectors)
    dim = len(next(iter(vectors.values()))) if vectors else 0
    return (np.stack([vectors[i] for i in ok]) if ok else np.zeros((0, dim), np.float32)), ok


def load_images(
    client: Minio, objects: Sequence[tuple[str, str]], *, min_side: int
) -> tuple[list[Image.Image], list[int]]:
    """Decoded photos (shorter side ``min_side``) of the objects that decoded, and their indices (``finetune``
    mode reads each photo once per epoch, so they are decoded once and kept)."""
    load = object_loader(client, min_side=min_side, max_bytes=MAX_GALLERY_OBJECT_BYTES)
    images: list[Image.Image] = []
    ok: list[int] = []
    for batch in decoded_batches(objects, load, batch_size=64, skipped=OBJECT_SKIPPED):
        images.extend(batch.images)
        ok.extend(batch.indices)
    return images, ok


def _classes(snap: GallerySnapshot, ok: Sequence[int]) -> TrainingData:
    """Class and region of each usable object (gallery photos first, then the negatives)."""
    landmarks = list(snap.landmarks)
    class_of = {lm.id: i for i, lm in enumerate(landmarks)}
    country = {lm.id: lm.country for lm in landmarks}
    n_photos = len(snap.photos)
    labels = np.array([class_of[snap.photos[i][2]] if i < n_photos else len(landmarks) for i in ok], dtype=np.int64)
    regions = [region_of(country[snap.photos[i][2]]) if i < n_photos else "" for i in ok]
    return TrainingData(labels, len(landmarks), regions)


def tune_backbone_state(
    images: Sequence[Image.Image],
    data: TrainingData,
    config: TrainConfig,
    embedder_config: Any,
    options: FinetuneOptions,
    *,
    progress: ProgressFn | None = None,
    runs: int = 1,
) -> dict[str, Any]:
    """Tune the backbone on the landmark photos of ``data`` only (its "no landmark" rows stay out); the tuned
    tensors, as a bundle's ``backbone.pt`` stores them (``landmarks eval --train --mode finetune`` uses it too)."""
    from shared.training.finetune import finetune

    rows = np.flatnonzero(data.labels != data.no_landmark)
    landmark_data = TrainingData(data.labels[rows], data.num_landmarks, [data.regions[i] for i in rows])

    def report(e: EpochReport) -> None:
        if progress:
            progress(TrainingProgress("finetune", 1, runs, e))

    tuned = finetune(
        lambda i: images[int(rows[i])],
        landmark_data,
        config,
        embedder_config,
        blocks=options.blocks,
        device=options.device,
        weights_path=options.weights_path,
        progress=report,
        cached_views=options.cached_views,
    )
    return tuned.tuned_state


def tune_backbone(
    images: Sequence[Image.Image],
    data: TrainingData,
    config: TrainConfig,
    embedder: Any,
    options: FinetuneOptions,
    *,
    progress: ProgressFn | None = None,
    runs: int = 1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Tune the backbone on the landmark photos; return every photo's features through the tuned backbone (the
    head's input, computed by the inference network itself) and the tuned tensors for the bundle."""
    state = tune_backbone_state(images, data, config, embedder.config, options, progress=progress, runs=runs)
    return tuned_embedder(embedder, state, options).embed(list(images)), state


def tuned_embedder(embedder: Any, state: dict[str, Any], options: FinetuneOptions) -> Any:
    """``embedder``'s network with the tuned backbone tensors ``state``, on the tuning device: the features the
    head is trained on must come from the network that will serve them."""
    return embedder.with_states(backbone_state=state, device=options.device, weights_path=options.weights_path)


def train_model_version(
    factory: sessionmaker[Session],
    client: Minio,
    embedder: Any,
    config: TrainConfig,
    *,
    models_bucket: str,
    model_store: Path,
    min_side: int,
    feature_cache: Path | None,
    folds: int = 5,
    rejection: float = 0.99,
    activate: bool = False,
    progress: ProgressFn | None = None,
    finetune: FinetuneOptions | None = None,
    on_registered: Callable[[Session, ModelVersion], None] | None = None,
    unknown_rejection: float | None = None,
) -> ModelVersion:
    """Features of the gallery (landmark photos + negatives), train with cross-fitted calibration, publish the
    bundle and register the version with its metrics. ``embedder`` must be the untrained network (no head);
    ``finetune`` tunes its last blocks first (see the module docstring); ``unknown_rejection`` fits the open-set
    score on landmarks left out of retrained heads (:mod:`shared.training.open_set`)."""
    with session_scope(factory) as session:
        snap = gallery_snapshot(session)
    if not snap.landmarks:
        raise ValueError("the gallery has no landmark photos: run `landmarks gallery import` first")
    if len(snap.negatives) < max(2, folds):
        raise ValueError(f"training needs at least {max(2, folds)} non-landmark (negative) gallery photos")
    runs = folds + 1 + (finetune is not None)
    if progress:
        progress(TrainingProgress("features", 0, runs))
    objects = [(b, k) for b, k, _, _ in snap.photos] + list(snap.negatives)
    model = embedder.describe()
    backbone_state = None
    if finetune is None:
        # Embedded as recognition decodes queries (the side recognition.decode_fit names); finetune's crops below
        # keep the shorter side at min_side, as a crop of 40% of the photo still needs its pixels.
        fit = fit_for_resize(embedder.config.resize, embedder.config.decode_fit)
        features, ok = cached_features(client, embedder, objects, cache_dir=feature_cache, min_side=min_side, fit=fit)
        data = _classes(snap, ok)
    else:
        images, ok = load_images(client, objects, min_side=min_side)
        data = _classes(snap, ok)
        features, backbone_state = tune_backbone(images, data, config, embedder, finetune, progress=progress, runs=runs)
        del images
        model["finetune"] = {"blocks": finetune.blocks, "tensors": len(backbone_state), "on": "landmark photos"}
    with session_scope(factory) as session:
        version = registry.new_version_name(session)

    def publish(bundle: Bundle) -> ModelVersion:
        return publish_bundle(
            factory,
            client,
            bundle,
            models_bucket=models_bucket,
            model_store=model_store,
            activate=activate,
            on_registered=on_registered,
            embedder=embedder,
        )

    if finetune is not None and not finetune.head:
        assert backbone_state is not None
        bundle = _headless_bundle(snap, features, ok, model, version, backbone_state, config, finetune, rejection)
        return publish(bundle)
    ds = FeatureDataset(features, data)
    landmarks = list(snap.landmarks)
    shift = runs - (folds + 1)  # the fine-tuning run comes first
    trained = train_model(
        ds,
        landmarks,
        config,
        version=version,
        model=model,
        folds=folds,
        rejection=rejection,
        progress=None if progress is None else (lambda p: progress(replace(p, run=p.run + shift, runs=runs))),
        backbone_state=backbone_state,
        unknown_rejection=unknown_rejection,
    )
    metrics = {
        "landmarks": len(landmarks),
        "gallery_photos": int(len(ds.landmark_rows)),
        "negatives": int(len(ds.non_landmark_rows)),
        "failed_photos": len(objects) - len(ok),
        **trained.summary(rejection),
    }
    return publish(replace(trained.bundle, metrics=metrics))


def _headless_bundle(
    snap: GallerySnapshot,
    features: np.ndarray,
    ok: Sequence[int],
    model: dict[str, Any],
    version: str,
    backbone_state: dict[str, Any],
    config: TrainConfig,
    finetune: FinetuneOptions,
    rejection: float,
) -> Bundle:
    """A tuned backbone without a head: the untrained bundle (centroids, references, thresholds on the negatives)
    on the tuned features, carrying the tuned tensors. The negatives never reached the tuning, so the thresholds
    stay out-of-sample; the margin comes from gallery photos the backbone was tuned on."""
    features = l2_normalize(features)
    n_photos = len(snap.photos)
    rows = np.asarray(ok)
    photo_rows = np.flatnonzero(rows < n_photos)
    negative_rows = np.flatnonzero(rows >= n_photos)
    metrics = {
        "landmarks": len(snap.landmarks),
        "gallery_photos": len(photo_rows),
        "negatives": len(negative_rows),
        "failed_photos": len(snap.photos) + len(snap.negatives) - len(ok),
        "training": {
            **config.to_dict(),
            "mode": "finetune",
            "head": False,
            "blocks": finetune.blocks,
            "cached_views": finetune.cached_views,
        },
        "calibration": f"threshold rejects {rejection:.0%} of the gallery's negatives (never tuned on)",
    }
    bundle = bundle_from_gallery(
        snap,
        features[photo_rows],
        rows[photo_rows].tolist(),
        features[negative_rows],
        version=version,
        model={**model, "finetune": {**model["finetune"], "head": False}},
        rejection=rejection,
        metrics=metrics,
    )
    return replace(bundle, backbone_state=backbone_state)


MODES = ("features", "finetune")


def train_from_options(
    settings: Settings,
    factory: sessionmaker[Session],
    client: Minio,
    options: dict[str, Any],
    *,
    activate: bool = False,
    progress: Callable[[Any], None] | None = None,
    on_registered: Callable[[Session, ModelVersion], None] | None = None,
) -> ModelVersion:
    """Train a version as the task options and the settings say: what the training task and `landmarks model
    train --wait` both run (``options``: :class:`TrainConfig` fields plus ``folds``, ``mode``, ``blocks``,
    ``cached_views`` and ``head``)."""
    from shared.model.factory import decode_side, embedder_from_settings
    from shared.storage import ensure_buckets
    from shared.training.trainer import TrainConfig

    mode = options.get("mode", "features")
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; known: {', '.join(MODES)}")
    rec = settings.recognition
    embedder = embedder_from_settings(rec, cached=False)
    embedder_config = embedder.config
    known = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{k: v for k, v in options.items() if k in known})
    finetune = None
    if mode == "finetune":
        finetune = FinetuneOptions(
            blocks=int(options.get("blocks", 2)),
            device=rec.device,
            weights_path=rec.weights_path,
            cached_views=int(options.get("cached_views", 0)),
            head=bool(options.get("head", True)),
        )
    ensure_buckets(client, [settings.s3.models_bucket])
    return train_model_version(
        factory,
        client,
        embedder,
        config,
        models_bucket=settings.s3.models_bucket,
        model_store=settings.model_store,
        min_side=decode_side(embedder_config),
        feature_cache=settings.state_dir / "training-features" / embedder.cache_key(),  # features mode only
        folds=int(options.get("folds", 5)),
        rejection=rec.non_landmark_rejection,
        activate=activate,
        progress=progress,
        finetune=finetune,
        on_registered=on_registered,
        unknown_rejection=rec.unknown_rejection,
    )
