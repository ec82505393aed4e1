"""`landmarks model train`: options, and clear refusals before anything is enqueued or trained."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from workers.cli import model as cli_model


def _app() -> typer.Typer:
    app = typer.Typer()
    cli_model.register(app)
    return app


def test_model_train_is_added_to_the_model_group() -> None:
    result = CliRunner().invoke(_app(), ["model", "train", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--wait", "--loss", "--epochs", "--mode", "--folds"):
        assert option in result.output


def test_unknown_loss_and_mode_are_refused() -> None:
    runner = CliRunner()
    bad_loss = runner.invoke(_app(), ["model", "train", "--wait", "--loss", "triplet"])
    assert bad_loss.exit_code == 2 and "center" in bad_loss.output
    bad_mode = runner.invoke(_app(), ["model", "train", "--wait", "--mode", "lora"])
    assert bad_mode.exit_code == 2 and "finetune" in bad_mode.output


def test_finetune_mode_passes_its_blocks_to_the_training_run(monkeypatch) -> None:
    seen: list[dict] = []

    def fake_train(_settings: object, _factory: object, _client: object, options: dict, **_kw: object) -> object:
        seen.append(options)
        raise SystemExit(0)  # stop before printing a model version: only the options matter here

    monkeypatch.setattr("shared.training.service.train_from_options", fake_train)
    monkeypatch.setattr("workers.runtime.session_factory", lambda: None)
    monkeypatch.setattr("workers.runtime.minio_client", lambda: None)
    CliRunner().invoke(_app(), ["model", "train", "--wait", "--mode", "finetune", "--blocks", "3"])
    assert seen and seen[0]["mode"] == "finetune" and seen[0]["blocks"] == 3
    assert seen[0]["cached_views"] == 0 and seen[0]["head"] is True
    CliRunner().invoke(_app(), ["model", "train", "--wait"])
    assert seen[1]["mode"] == "features" and "blocks" not in seen[1] and "head" not in seen[1]
    args = ["model", "train", "--wait", "--mode", "finetune", "--cached-views", "3", "--no-head"]
    CliRunner().invoke(_app(), args)
    assert seen[2]["cached_views"] == 3 and seen[2]["head"] is False
