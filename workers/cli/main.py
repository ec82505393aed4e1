"""The ``landmarks`` command: one CLI for users and operators, a thin shell over the service functions."""

from __future__ import annotations

import typer

from workers.cli import api as cli_api
from workers.cli import bridge as cli_bridge
from workers.cli import db as cli_db
from workers.cli import demo as cli_demo
from workers.cli import dev as cli_dev
from workers.cli import gallery as cli_gallery
from workers.cli import model as cli_model
from workers.cli import ops as cli_ops
from workers.cli import photos as cli_photos
from workers.cli import recognition as cli_recognition
from workers.cli import scenes as cli_scenes

app = typer.Typer(no_args_is_help=True, help="Landmark recognition worker fleet for photo clouds.")
app.add_typer(cli_dev.app, name="dev", help="Start, stop and inspect the local services.")
app.add_typer(cli_db.app, name="db", help="Database schema migrations.")
app.add_typer(cli_bridge.app, name="bridge", help="The event bridge: object-storage events -> Celery tasks.")
app.add_typer(cli_demo.app, name="demo", help="Sample data and the end-to-end demo.")
app.add_typer(cli_api.app, name="api", help="The albums HTTP API and the album browser.")
cli_recognition.register(app)
cli_photos.register(app)
cli_gallery.register(app)
cli_model.register(app)
cli_scenes.register(app)
cli_ops.register(app)


if __name__ == "__main__":
    app()
