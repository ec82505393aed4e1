"""The ``landmarks`` command: one CLI for users and operators, a thin shell over the service functions."""

from __future__ import annotations

import typer

from workers import cli_db, cli_dev, cli_recognition

app = typer.Typer(no_args_is_help=True, help="Landmark recognition worker fleet for photo clouds.")
app.add_typer(cli_dev.app, name="dev", help="Start, stop and inspect the local services.")
app.add_typer(cli_db.app, name="db", help="Database schema migrations.")
cli_recognition.register(app)


if __name__ == "__main__":
    app()
