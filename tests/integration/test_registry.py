"""Model versions: one active at a time, activation and rollback, against the real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import ModelStatus, ModelVersion
from shared.versions import registry

pytestmark = pytest.mark.integration


def _register(session: Session, name: str) -> ModelVersion:
    return registry.register_version(
        session,
        version=name,
        backbone="efficientnet_lite2",
        artifact_uri=f"s3://models/{name}/",
        thresholds={"global_score": 0.5},
        metrics={"landmarks": 3},
    )


def _active(session: Session) -> list[str]:
    return list(
        session.execute(select(ModelVersion.version).where(ModelVersion.status == ModelStatus.active)).scalars()
    )


def test_activate_keeps_exactly_one_active_and_rollback_returns(db_session: Session) -> None:
    tag = uuid.uuid4().hex[:6]
    v1, v2 = _register(db_session, f"v1-{tag}"), _register(db_session, f"v2-{tag}")
    assert v1.status == ModelStatus.ready
    registry.activate(db_session, v1.version)
    assert _active(db_session) == [v1.version]
    registry.activate(db_session, v2.version)
    assert _active(db_session) == [v2.version]
    assert db_session.get(ModelVersion, v1.id).status == ModelStatus.retired
    assert registry.rollback(db_session).version == v1.version
    assert _active(db_session) == [v1.version]
    assert db_session.get(ModelVersion, v2.id).status == ModelStatus.ready
    assert registry.active_version(db_session).version == v1.version


def test_activate_unknown_or_unready_version_is_refused(db_session: Session) -> None:
    with pytest.raises(registry.UnknownModelVersion):
        registry.activate(db_session, "no-such-version")
    training = ModelVersion(version=f"t-{uuid.uuid4().hex[:6]}", backbone="x", status=ModelStatus.training)
    db_session.add(training)
    db_session.flush()
    with pytest.raises(registry.UnknownModelVersion):
        registry.activate(db_session, training.version)


def test_rollback_without_history_is_refused(db_session: Session) -> None:
    db_session.execute(ModelVersion.__table__.delete())
    v = _register(db_session, "only")
    registry.activate(db_session, v.version)
    with pytest.raises(registry.UnknownModelVersion):
        registry.rollback(db_session)


def test_version_names_sort_in_build_order(db_session: Session) -> None:
    before = db_session.execute(select(func.count()).select_from(ModelVersion)).scalar_one()
    name = registry.new_version_name(db_session)
    assert name.startswith(f"v{before + 1:04d}-")
