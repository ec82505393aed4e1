"""`landmarks model train`: options, and clear refusals before anything is enqueued or trained."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from workers import cli_gallery, cli_train


def _app() -> typer.Typer:
    app = typer.Typer()
    cli_gallery.register(app)
    cli_train.register(app)
    return app


def test_model_train_is_added_to_the_model_group() -> None:
    result = CliRunner().invoke(_app(), ["model", "train", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--wait", "--loss", "--epochs", "--mode", "--folds"):
        assert option in result.output


def test_unknown_loss_and_unavailable_mode_are_refused() -> None:
    runner = CliRunner()
    bad_loss = runner.invoke(_app(), ["model", "train", "--wait", "--loss", "triplet"])
    assert bad_loss.exit_code == 2 and "center" in bad_loss.output
    finetune = runner.invoke(_app(), ["model", "train", "--wait", "--mode", "finetune"])
    assert finetune.exit_code == 2 and "features" in finetune.output
