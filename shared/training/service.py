"""Train a model version from the gallery in PostgreSQL + object storage, publish and register it.

The service the Celery task and ``landmarks model train --wait`` both call. Pooled backbone features of gallery
objects are cached on disk by object key (gallery keys are content hashes, so an entry never goes stale): the
second training run of the same gallery skips the backbone entirely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from minio import Minio
from sqlalchemy.orm import Session, sessionmaker

from shared import registry
from shared.db.models import ModelVersion
from shared.db.session import session_scope
from shared.model_build import embed_objects, gallery_snapshot, publish_bundle
from shared.recognition.recognizer import EmbedsImages
from shared.training.curriculum import region_of
from shared.training.pipeline import FeatureDataset, ProgressFn, TrainingProgress, train_model
from shared.training.trainer import TrainConfig, TrainingData


def _cache_path(cache_dir: Path, bucket: str, key: str) -> Path:
    digest = hashlib.sha1(f"{bucket}/{key}".encode()).hexdigest()
    return cache_dir / digest[:2] / f"{digest}.npy"


def cached_features(
    client: Minio,
    embedder: EmbedsImages,
    objects: Sequence[tuple[str, str]],
    *,
    cache_dir: Path | None,
    min_side: int,
    batch_size: int = 16,
) -> tuple[np.ndarray, list[int]]:
    """Pooled features (rows of the objects that decoded) and their indices, from the cache where possible."""
    vectors: dict[int, np.ndarray] = {}
    todo: list[int] = []
    for i, (bucket, key) in enumerate(objects):
        path = _cache_path(cache_dir, bucket, key) if cache_dir else None
        if path is not None and path.is_file():
            vectors[i] = np.load(path)
        else:
            todo.append(i)
    if todo:
        fresh = embed_objects(client, embedder, [objects[i] for i in todo], min_side=min_side, batch_size=batch_size)
        for row, j in zip(fresh.embeddings, fresh.ok, strict=True):
            i = todo[j]
            vectors[i] = row
            if cache_dir:
                path = _cache_path(cache_dir, *objects[i])
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, row)
                tmp.replace(path)
    ok = sorted(vectors)
    dim = len(next(iter(vectors.values()))) if vectors else 0
    return (np.stack([vectors[i] for i in ok]) if ok else np.zeros((0, dim), np.float32)), ok


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
) -> ModelVersion:
    """Features of the gallery (landmark photos + negatives), train with cross-fitted calibration, publish the
    bundle and register the version with its metrics. ``embedder`` must be the untrained network (no head)."""
    with session_scope(factory) as session:
        snap = gallery_snapshot(session)
    if not snap.landmarks:
        raise ValueError("the gallery has no landmark photos: run `landmarks gallery import` first")
    if len(snap.negatives) < max(2, folds):
        raise ValueError(f"training needs at least {max(2, folds)} non-landmark (negative) gallery photos")
    if progress:
        progress(TrainingProgress("features", 0, folds + 1))
    objects = [(b, k) for b, k, _, _ in snap.photos] + list(snap.negatives)
    features, ok = cached_features(client, embedder, objects, cache_dir=feature_cache, min_side=min_side)
    landmarks = list(snap.landmarks)
    class_of = {lm.id: i for i, lm in enumerate(landmarks)}
    country = {lm.id: lm.country for lm in landmarks}
    n_photos = len(snap.photos)
    labels = np.array([class_of[snap.photos[i][2]] if i < n_photos else len(landmarks) for i in ok])
    regions = [region_of(country[snap.photos[i][2]]) if i < n_photos else "" for i in ok]
    ds = FeatureDataset(features, TrainingData(labels, len(landmarks), regions))
    with session_scope(factory) as session:
        version = registry.new_version_name(session)
    trained = train_model(
        ds,
        landmarks,
        config,
        version=version,
        model=embedder.describe(),
        folds=folds,
        rejection=rejection,
        progress=progress,
    )
    metrics = {
        "landmarks": len(landmarks),
        "gallery_photos": int(len(ds.landmark_rows)),
        "negatives": int(len(ds.non_landmark_rows)),
        "failed_photos": len(objects) - len(ok),
        **trained.summary(rejection),
    }
    bundle = trained.bundle.__class__(**{**trained.bundle.__dict__, "metrics": metrics})
    return publish_bundle(
        factory, client, bundle, models_bucket=models_bucket, model_store=model_store, activate=activate
    )
