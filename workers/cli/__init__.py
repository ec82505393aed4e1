"""The ``landmarks`` command: one module per command group, thin shells over ``shared``.

Heavy libraries are imported inside the commands that need them. ``app`` is looked up lazily (the console script's
``workers.cli:app``), so importing one command module does not load every other.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from workers.cli.main import app

        return app
    raise AttributeError(name)
