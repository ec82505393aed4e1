"""`landmarks` starts without torch, faiss or onnxruntime (issue 21: every command, `--help` included, took 5-8 s
to start because the CLI modules imported the model code at module level)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "faiss", "onnxruntime", "scipy", "sklearn")
# What `--help` must not load either: the database, object-store and broker clients load in the commands.
CLIENTS = ("sqlalchemy", "minio", "celery", "redis", "pydantic_settings")

PROBE = """
import json, sys
from workers.cli import app
loaded_at_import = sorted(m for m in sys.modules)
for args in {helps!r}:
    try:
        app(args, prog_name="landmarks")
    except SystemExit as exc:
        assert exc.code in (0, None), (args, exc.code)
print(json.dumps({{"import": loaded_at_import, "help": sorted(sys.modules)}}))
"""

HELPS = [
    ["--help"],
    ["status", "--help"],
    ["albums", "--help"],
    ["upload", "--help"],
    ["recognize", "--help"],
    ["model", "--help"],
    ["model", "train", "--help"],
    ["gallery", "import", "--help"],
    ["reprocess", "--help"],
    ["dev", "--help"],
    ["bridge", "run", "--help"],
]


def _loaded() -> dict[str, list[str]]:
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(helps=HELPS)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def _top_level(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(names))


def test_importing_the_cli_loads_no_model_library() -> None:
    loaded = _loaded()
    assert _top_level(loaded["import"], HEAVY) == []
    assert _top_level(loaded["help"], HEAVY) == []


def test_help_pages_load_no_database_storage_or_broker_client() -> None:
    assert _top_level(_loaded()["help"], CLIENTS) == []
