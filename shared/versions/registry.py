"""Model versions: registration, activation, rollback, and loading the active bundle for workers.

A version is an immutable bundle in the models bucket (``s3://<models>/<version>/``) with a row in
``model_versions``; exactly one row is ``active``. Workers compare the active version before each task and load a
new bundle once, so `landmarks model activate` takes effect without a restart.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db.models import ModelStatus, ModelVersion

if TYPE_CHECKING:
    from minio import Minio  # annotations only: `model list`, `status` and the API read versions without it

    from shared.recognition.recognizer import Recognizer
    from shared.settings import RecognitionSettings


class NoActiveModel(Exception):
    """No model version is active: nothing can be recognised until one is built and activated."""


class UnknownModelVersion(Exception):
    pass


def new_version_name(session: Session, *, now: datetime | None = None) -> str:
    """``v0003-20261125T120501``: a sequence number that sorts, and the build time for people."""
    count = session.execute(select(func.count()).select_from(ModelVersion)).scalar_one()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"v{count + 1:04d}-{stamp}"


def register_version(
    session: Session,
    *,
    version: str,
    backbone: str,
    artifact_uri: str,
    thresholds: dict[str, Any],
    metrics: dict[str, Any],
) -> ModelVersion:
    row = ModelVersion(
        version=version,
        backbone=backbone,
        status=ModelStatus.ready,
        artifact_uri=artifact_uri,
        thresholds=thresholds,
        metrics=metrics,
    )
    session.add(row)
    session.flush()
    return row


OPEN_SET_METRIC = "open_set_unknown_rejection"


def open_set_warning(version: str, metrics: dict[str, Any]) -> str | None:
    """What an operator must hear before a version without an open-set score decides photos: it files photos of
    landmarks its gallery does not know into the nearest known landmark's album (versions built or trained with
    ``recognition.unknown_rejection`` off, fine-tuned backbones without a head; issue #17: a trained head without
    the score turns away 0.556 of such photos, with it 0.966). None when it has one."""
    if OPEN_SET_METRIC in metrics:
        return None
    return (
        f"{version} has no open-set score: photos of landmarks its gallery does not know can land in a wrong album. "
        "`landmarks model build` makes a version that turns them away (`landmarks eval --train` shows the figures)."
    )


def active_version(session: Session) -> ModelVersion | None:
    return session.execute(select(ModelVersion).where(ModelVersion.status == ModelStatus.active)).scalar_one_or_none()


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.execute(select(ModelVersion).order_by(ModelVersion.id)).scalars())


def activate(session: Session, version: str) -> ModelVersion:
    """Make ``version`` the only active one; the previously active one is retired (rollback returns to it)."""
    row = session.execute(
        select(ModelVersion).where(ModelVersion.version == version).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise UnknownModelVersion(f"no model version {version!r}")
    if row.status == ModelStatus.training or row.status == ModelStatus.failed:
        raise UnknownModelVersion(f"model version {version} is {row.status.value}, not ready")
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == ModelStatus.active, ModelVersion.id != row.id)
        .values(status=ModelStatus.retired)
    )
    row.status = ModelStatus.active
    row.activated_at = datetime.now(UTC)
    session.flush()
    return row


def rollback(session: Session) -> ModelVersion:
    """Re-activate the version that was active before the current one."""
    current = active_version(session)
    query = select(ModelVersion).where(
        ModelVersion.status == ModelStatus.retired, ModelVersion.activated_at.is_not(None)
    )
    if current is not None:
        query = query.where(ModelVersion.id != current.id)
    previous = session.execute(query.order_by(ModelVersion.activated_at.desc()).limit(1)).scalar_one_or_none()
    if previous is None:
        raise UnknownModelVersion("no earlier active version to roll back to")
    if current is not None:
        current.status = ModelStatus.ready
    return activate(session, previous.version)


def bundle_uri(bucket: str, version: str) -> str:
    return f"s3://{bucket}/{version}/"


SAFE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def local_bundle_dir(model_store: Path, version: str) -> Path:
    """The bundle's cache folder; a version name that could leave ``model_store`` is refused."""
    if not SAFE_VERSION.match(version) or ".." in version:
        raise ValueError(f"unsafe model version name {version!r}")
    return model_store / version


def fetch_bundle(version: str, client: Minio, bucket: str, model_store: Path) -> Path:
    """The version's bundle folder under ``model_store``: the cached copy when its hashes verify, else fetched from
    ``s3://<bucket>/<version>/`` (workers and `landmarks recognize` share this cache)."""
    from shared.recognition.bundle import download_bundle

    return download_bundle(client, bucket, version, local_bundle_dir(model_store, version))


def load_recognizer(
    version: ModelVersion,
    client: Minio,
    bucket: str,
    model_store: Path,
    rec: RecognitionSettings | None = None,
    *,
    threads: int | None = None,
    batch_size: int | None = None,
    preprocess_threads: int = 1,
    **overrides: Any,
) -> Recognizer:
    """The version's bundle from the local cache (verified by its hashes) or else from the models bucket, run by
    the settings' engine (``overrides``: settings fields, e.g. ``device="cpu"``)."""
    from shared.recognition.bundle import load_bundle
    from shared.recognition.recognizer import Recognizer

    return Recognizer.from_bundle(
        load_bundle(fetch_bundle(version.version, client, bucket, model_store)),
        rec,
        threads=threads,
        batch_size=batch_size,
        preprocess_threads=preprocess_threads,
        **overrides,
    )
