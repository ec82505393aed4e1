"""Scene tags through apply_recognition against the real PostgreSQL: written per model version, replaced on a
replay, listed by each photo's current version; and `landmarks scenes --user U --json` on a database of its own."""

from __future__ import annotations

import json
import uuid

import pytest
import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import Landmark, ModelStatus, ModelVersion, SceneTag
from shared.photos import records as photos
from shared.photos.apply import apply_recognition
from shared.scenes.store import UnknownUserError, list_scene_albums

pytestmark = pytest.mark.integration


def _world(session: Session) -> dict[str, int]:
    colosseum = Landmark(slug="scene_colosseum", name="Colosseum", country="Italy")
    v1 = ModelVersion(
        version=f"scene-v1-{uuid.uuid4().hex[:6]}", backbone="efficientnet_lite2", status=ModelStatus.active
    )
    v2 = ModelVersion(
        version=f"scene-v2-{uuid.uuid4().hex[:6]}", backbone="efficientnet_lite2", status=ModelStatus.ready
    )
    session.add_all([colosseum, v1, v2])
    session.flush()
    return {"v1": v1.id, "v2": v2.id}


def _photo(session: Session, key: str, owner: str = "scene_alice") -> uuid.UUID:
    r = photos.record_created(
        session, bucket="photos", key=key, etag="e1", size=10, content_type="image/jpeg", owner=owner
    )
    return r.photo_id


def _outcome(slug: str | None, scenes: dict[str, float] | None) -> dict:
    out = {
        "matches": [
            {"landmark": slug, "score": 0.8, "method": "global+verified" if slug else "none", "verified": bool(slug)}
        ],
        "meta": {},
    }
    if scenes is not None:
        out["scenes"] = scenes
    return out


def _tags(session: Session, photo_id: uuid.UUID, version: int) -> dict[str, float]:
    rows = session.execute(
        select(SceneTag.label, SceneTag.score).where(
            SceneTag.photo_id == photo_id, SceneTag.model_version_id == version
        )
    )
    return dict(rows.all())


def test_tags_are_written_replayed_and_replaced_per_version(db_session: Session) -> None:
    w = _world(db_session)
    arena = _photo(db_session, "scene/arena.jpg")
    pizza = _photo(db_session, "scene/pizza.jpg")
    assert (
        apply_recognition(db_session, arena, "e1", w["v1"], _outcome("scene_colosseum", {"architecture": 0.81}))
        == "applied"
    )
    apply_recognition(db_session, pizza, "e1", w["v1"], _outcome(None, {"food": 0.9, "restaurant": 0.3}))
    apply_recognition(db_session, arena, "e1", w["v1"], _outcome("scene_colosseum", {"architecture": 0.81}))  # replay
    assert _tags(db_session, arena, w["v1"]) == {"architecture": 0.81}
    assert _tags(db_session, pizza, w["v1"]) == {"food": 0.9, "restaurant": 0.3}

    albums = {a.label: a for a in list_scene_albums(db_session, "scene_alice")}
    assert set(albums) == {"architecture", "food", "restaurant"}
    assert [p.key for p in albums["architecture"].photos] == ["scene/arena.jpg"]
    assert albums["food"].photo_count == 1 and albums["food"].title == "Food & drink"

    # Reprocessed by v2: the listing follows the photo's current version; v1's rows stay for the record.
    apply_recognition(db_session, pizza, "e1", w["v2"], _outcome(None, {"food": 0.95}))
    albums = {a.label: a for a in list_scene_albums(db_session, "scene_alice")}
    assert set(albums) == {"architecture", "food"}
    assert albums["food"].photos[0].score == 0.95
    assert _tags(db_session, pizza, w["v1"]) == {"food": 0.9, "restaurant": 0.3}


def test_outcome_without_scenes_and_deleted_photos(db_session: Session) -> None:
    w = _world(db_session)
    old = _photo(db_session, "scene/old-message.jpg")
    gone = _photo(db_session, "scene/gone.jpg")
    apply_recognition(db_session, old, "e1", w["v1"], _outcome(None, None))  # queued before scene tags existed
    assert _tags(db_session, old, w["v1"]) == {}
    apply_recognition(db_session, gone, "e1", w["v1"], _outcome(None, {"pets": 0.7}))
    assert [a.label for a in list_scene_albums(db_session, "scene_alice")] == ["pets"]
    photos.record_removed(db_session, bucket="photos", key="scene/gone.jpg")
    db_session.flush()
    assert list_scene_albums(db_session, "scene_alice") == []
    with pytest.raises(UnknownUserError, match="nobody_here"):
        list_scene_albums(db_session, "nobody_here")


def test_cli_lists_scene_albums(make_scratch_database, monkeypatch) -> None:
    from typer.testing import CliRunner

    from shared.db import migrate
    from shared.db.session import make_engine, make_session_factory, session_scope
    from shared.settings import get_settings
    from workers import runtime
    from workers.cli import scenes as cli_scenes

    url = make_scratch_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            w = _world(session)
            pid = _photo(session, "cli/temple.jpg", owner="scene_bob")
            apply_recognition(session, pid, "e1", w["v1"], _outcome(None, {"architecture": 0.66}))
    finally:
        engine.dispose()
    monkeypatch.setenv("LANDMARKS_DATABASE_URL", url)
    caches = (get_settings, runtime.session_factory)
    for cached in caches:
        cached.cache_clear()
    app = typer.Typer()
    app.callback()(lambda: None)
    cli_scenes.register(app)
    runner = CliRunner()
    try:
        listed = runner.invoke(app, ["scenes", "--user", "scene_bob", "--json"])
        assert listed.exit_code == 0, listed.output
        payload = json.loads(listed.output)
        assert payload["user"] == "scene_bob"
        assert [(a["label"], a["photo_count"], a["photos"][0]["key"]) for a in payload["scenes"]] == [
            ("architecture", 1, "cli/temple.jpg")
        ]
        table = runner.invoke(app, ["scenes", "--user", "scene_bob"])
        assert table.exit_code == 0 and "Architecture" in table.output
        unknown = runner.invoke(app, ["scenes", "--user", "nobody_here"])
        assert unknown.exit_code == 1 and "nobody_here" in unknown.output
    finally:
        for cached in caches:
            cached.cache_clear()
