"""`landmarks eval` and `landmarks recognize`: offline recognition commands."""

import typer


def register(app: typer.Typer) -> None:
    """Attach the recognition commands to the top-level app."""
