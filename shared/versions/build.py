"""Building a model version from the gallery in PostgreSQL and object storage (no training: backbone features).

Embeds every gallery photo and every negative, clusters centroids, picks references, calibrates thresholds on
the negatives, and publishes an immutable bundle (local folder + models bucket) with a ``model_versions`` row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from minio import Minio
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import City, GalleryPhoto, GalleryRole, Landmark, ModelVersion
from shared.db.session import session_scope
from shared.gallery import mining
from shared.imaging.batches import embed_objects
from shared.imaging.decode import Fit
from shared.recognition.build import build_bundle_from_embeddings
from shared.recognition.bundle import Bundle, LandmarkInfo, save_bundle, upload_bundle
from shared.recognition.whitening import WhiteningOptions
from shared.versions import registry


@dataclass
class GallerySnapshot:
    landmarks: list[LandmarkInfo]
    photos: list[tuple[str, str, int, GalleryRole]]  # bucket, key, landmark id, role
    negatives: list[tuple[str, str]]
    unknown_landmarks: list[tuple[str, str]] = field(default_factory=list)  # the operator's landmark-like negatives


def gallery_snapshot(session: Session) -> GallerySnapshot:
    """Active landmarks with their usable photos (train and reference), and the negatives."""
    rows = session.execute(
        select(GalleryPhoto.bucket, GalleryPhoto.key, GalleryPhoto.role, Landmark, City)
        .join(Landmark, Landmark.id == GalleryPhoto.landmark_id)
        .outerjoin(City, City.id == Landmark.city_id)
        .where(
            Landmark.active.is_(True),
            GalleryPhoto.role.in_([GalleryRole.train, GalleryRole.reference]),
            mining.may_stay(),  # a mined photo counts only while its owner shares it
        )
        .order_by(Landmark.id, GalleryPhoto.id)
    ).all()
    landmarks: dict[int, LandmarkInfo] = {}
    photos = []
    for bucket, key, role, lm, city in rows:
        landmarks.setdefault(
            lm.id,
            LandmarkInfo(lm.id, lm.slug, lm.name, city.name if city else "", lm.country, lm.lat, lm.lon),
        )
        photos.append((bucket, key, lm.id, role))

    def objects(role: GalleryRole) -> list[tuple[str, str]]:
        query = select(GalleryPhoto.bucket, GalleryPhoto.key).where(GalleryPhoto.role == role)
        return [(bucket, key) for bucket, key in session.execute(query.order_by(GalleryPhoto.id))]

    return GallerySnapshot(
        list(landmarks.values()), photos, objects(GalleryRole.negative), objects(GalleryRole.unknown_landmark)
    )


def build_model(
    factory: sessionmaker[Session],
    client: Minio,
    embedder: Any,
    *,
    models_bucket: str,
    model_store: Path,
    min_side: int,
    fit: Fit = "short",
    activate: bool = False,
    rejection: float = 0.99,
    unknown_rejection: float | None = None,
    whitening: WhiteningOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ModelVersion:
    """Embed the gallery, build and publish a bundle, register it (and activate it when asked); with
    ``unknown_rejection`` the bundle's open-set score is calibrated on landmarks left out of the gallery."""
    with session_scope(factory) as session:
        snap = gallery_snapshot(session)
    if not snap.landmarks:
        raise ValueError("the gallery has no landmark photos: run `landmarks gallery import` first")
    if not snap.negatives:
        raise ValueError("the gallery has no non-landmark photos to calibrate the threshold on")
    photos = [(b, k) for b, k, _, _ in snap.photos]
    gallery = embed_objects(client, embedder, photos, min_side=min_side, fit=fit, progress=progress)
    negatives = embed_objects(client, embedder, snap.negatives, min_side=min_side, fit=fit, progress=progress)
    unknown = embed_objects(client, embedder, snap.unknown_landmarks, min_side=min_side, fit=fit, progress=progress)
    with session_scope(factory) as session:
        version = registry.new_version_name(session)
    metrics = {
        "landmarks": len(snap.landmarks),
        "gallery_photos": len(gallery.ok),
        "negatives": len(negatives.ok),
        "unknown_landmarks": len(unknown.ok),
        "failed_photos": len(gallery.failed) + len(negatives.failed) + len(unknown.failed),
        "calibration": f"threshold rejects {rejection:.0%} of the gallery's negatives (in-sample)",
    }
    bundle = bundle_from_gallery(
        snap,
        gallery.embeddings,
        gallery.ok,
        negatives.embeddings,
        version=version,
        model=embedder.describe(),
        rejection=rejection,
        unknown_rejection=unknown_rejection,
        whitening=whitening,
        unknown_landmarks=unknown.embeddings if len(unknown.ok) else None,
        metrics=metrics,
    )
    return publish_bundle(
        factory,
        client,
        bundle,
        models_bucket=models_bucket,
        model_store=model_store,
        activate=activate,
        embedder=embedder,
    )


def bundle_from_gallery(
    snap: GallerySnapshot,
    gallery: np.ndarray,
    gallery_ok: Sequence[int],
    negatives: np.ndarray,
    *,
    version: str,
    model: dict[str, Any],
    rejection: float,
    metrics: dict[str, Any],
    unknown_rejection: float | None = None,
    whitening: WhiteningOptions | None = None,
    unknown_landmarks: np.ndarray | None = None,
) -> Bundle:
    """The untrained decision's bundle from embeddings of the gallery photos (``gallery_ok``: their indices in
    ``snap.photos``) and of the negatives: centroids, references (the hand-picked ones when every landmark has
    them) and thresholds calibrated on the negatives."""
    gallery_landmarks = np.array([snap.photos[i][2] for i in gallery_ok], dtype=np.int64)
    is_ref = np.array([snap.photos[i][3] == GalleryRole.reference for i in gallery_ok], dtype=bool)
    if set(gallery_landmarks[is_ref].tolist()) != set(gallery_landmarks.tolist()):
        is_ref[:] = False  # hand-picked references only when every landmark has them; else picked per landmark
    return build_bundle_from_embeddings(
        version=version,
        model=model,
        landmarks=snap.landmarks,
        gallery=gallery,
        gallery_landmarks=gallery_landmarks,
        non_landmarks=negatives,
        references=gallery[is_ref] if is_ref.any() else None,
        reference_landmarks=gallery_landmarks[is_ref] if is_ref.any() else None,
        rejection=rejection,
        unknown_rejection=unknown_rejection,
        whitening=whitening,
        unknown_landmarks=unknown_landmarks,
        metrics=metrics,
    )


def publish_bundle(
    factory: sessionmaker[Session],
    client: Minio,
    bundle: Bundle,
    *,
    models_bucket: str,
    model_store: Path,
    activate: bool = False,
    on_registered: Callable[[Session, ModelVersion], None] | None = None,
    embedder: Any = None,
) -> ModelVersion:
    """Save the bundle locally, upload it to the models bucket, register its version (and activate it).

    ``on_registered`` runs in the registering transaction (a training job is marked done there, atomically).
    With the ``embedder`` it was built with (a :class:`shared.model.Embedder`), the bundle carries its network as
    an ONNX graph (head and tuned tensors included), so CPU workers load it as built instead of exporting."""
    export = getattr(embedder, "export_onnx", None)
    if export is not None and bundle.network_onnx is None:
        bundle = replace(bundle, network_onnx=export(bundle.head_state, bundle.backbone_state))
    folder = save_bundle(bundle, registry.local_bundle_dir(model_store, bundle.version))
    upload_bundle(client, models_bucket, bundle.version, folder)
    with session_scope(factory) as session:
        row = registry.register_version(
            session,
            version=bundle.version,
            backbone=str(bundle.model.get("backbone")),
            artifact_uri=registry.bundle_uri(models_bucket, bundle.version),
            thresholds=bundle.thresholds.to_dict(),
            metrics={**bundle.metrics, "centroids": len(bundle.centroids), "references": len(bundle.references)},
        )
        if activate:
            row = registry.activate(session, bundle.version)
        if on_registered is not None:
            on_registered(session, row)
        session.expunge(row)
    return row
