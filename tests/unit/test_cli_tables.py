"""Identifiers are never cut at 80 columns (issue 21 item 5: `model list` printed `v0001-20261…`, the very string
`model activate` needs): a table that does not fit becomes one `column: value` line per cell."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from workers.cli.main import app
from workers.cli.tables import print_table

VERSION = "v0001-20261204T101010"
KEY = "users/alice/2026/holidays/rome/the_colosseum_at_dusk_from_the_palatine_hill.jpg"


def _render(table: Table, width: int) -> str:
    out = io.StringIO()
    print_table(Console(file=out, width=width, color_system=None), table)
    return out.getvalue()


def _models() -> Table:
    table = Table("version", "status", "backbone", "created", "landmarks", "centroids", "open set", title="models")
    table.add_row(VERSION, "[green]active[/]", "efficientnet_lite2", "2026-12-04T10:10:10", "15", "45", "0.93")
    return table


def test_a_table_that_fits_is_printed_as_a_table() -> None:
    text = _render(_models(), 200)
    assert "┃ version" in text and VERSION in text


def test_a_table_too_wide_becomes_whole_lines() -> None:
    text = _render(_models(), 80)
    assert "…" not in text
    assert f"version: {VERSION}" in text.splitlines()
    assert "status: active" in text.splitlines()  # markup rendered, not printed
    assert text.splitlines()[0] == "models"


def test_multi_line_cells_stay_aligned_under_their_label() -> None:
    table = Table("album", "photos")
    table.add_row("Colosseum", f"{KEY} (0.91)\nusers/alice/b.jpg (0.88)")
    lines = _render(table, 80).splitlines()
    assert lines == ["album: Colosseum", f"photos: {KEY} (0.91)", "        users/alice/b.jpg (0.88)"]


@contextmanager
def _no_database() -> Iterator[None]:
    yield None


def test_model_list_prints_whole_versions_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.versions.registry
    import workers.runtime

    row = SimpleNamespace(
        version=VERSION,
        status=SimpleNamespace(value="active"),
        backbone="efficientnet_lite2",
        created_at=datetime(2026, 12, 4, 10, 10, 10, tzinfo=UTC),
        metrics={"landmarks": 15, "centroids": 45, "open_set_stand_in_rejection": 0.93},
        thresholds={},
    )
    monkeypatch.setattr(workers.runtime, "db_session", _no_database)
    monkeypatch.setattr(shared.versions.registry, "list_versions", lambda session: [row])
    result = CliRunner().invoke(app, ["model", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and f"version: {VERSION}" in result.output


def test_model_list_shows_the_share_of_left_out_landmarks_turned_away(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.versions.registry
    import workers.runtime

    metrics = {"open_set_stand_in_rejection": 0.83, "open_set_stand_in_landmark_rejection": 0.91}
    row = SimpleNamespace(
        version="v1",
        status=SimpleNamespace(value="active"),
        backbone="efficientnet_lite2",
        created_at=datetime(2026, 12, 4, 10, 10, 10, tzinfo=UTC),
        metrics=metrics,
        thresholds={},
    )
    monkeypatch.setattr(workers.runtime, "db_session", _no_database)
    monkeypatch.setattr(shared.versions.registry, "list_versions", lambda session: [row])
    result = CliRunner().invoke(app, ["model", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "0.91" in result.output and "0.83" not in result.output


def test_albums_print_whole_keys_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.photos.albums
    import workers.runtime
    from shared.photos.albums import AlbumPhotoView, AlbumView

    album = AlbumView("colosseum", "Colosseum", "Rome", "Italy", None, None, 1, None)
    album.photos = [AlbumPhotoView("id", "photos", KEY, 0.91, "auto")]
    monkeypatch.setattr(workers.runtime, "db_session", _no_database)
    monkeypatch.setattr(shared.photos.albums, "list_albums", lambda session, user: {"Rome, Italy": [album]})
    result = CliRunner().invoke(app, ["albums", "--user", "alice"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and f"{KEY} (0.91)" in result.output


def test_status_prints_whole_worker_names_at_80_columns() -> None:
    from workers.cli import ops as cli_ops

    node = "recognize-gpu@a-rather-long-host-name.cluster.internal.example.org"
    payload = {
        "broker": {"reachable": True},
        "queues": {"recognize": {"depth": 3, "by_priority": {"0": 1, "3": 2, "6": 0, "9": 0}}},
        "workers": {"recognize": [node]},
        "unacked": 0,
        "photos": {"done": 1},
        "photos_approximate": False,
        "reprocess_jobs": [],
        "failures": {"last_hour": 0, "open": 0},
        "model": None,
        "bridge": [],
    }
    out = io.StringIO()
    saved = cli_ops.console
    cli_ops.console = Console(file=out, width=80, color_system=None)
    try:
        cli_ops._print_status(payload)
    finally:
        cli_ops.console = saved
    assert "…" not in out.getvalue() and node in out.getvalue()
