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
from workers.cli.main import app
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


COMMANDS_PROBE = """
import json, sys
from workers.cli.main import app
for args in {commands!r}:
    try:
        app(args, prog_name="landmarks")
    except SystemExit:
        pass  # PostgreSQL and S3 do not answer here: each command ends with its one-line error
print(json.dumps(sorted(sys.modules)))
"""


def test_database_commands_load_no_model_library_and_no_s3_client(tmp_path) -> None:
    """`status`, `albums` and `model list` (run against a PostgreSQL that does not answer) load neither the model
    libraries nor MinIO; `upload` loads MinIO but no model library."""
    import os

    env = {
        **os.environ,
        "LANDMARKS_DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:9/landmarks",
        "LANDMARKS_S3__ENDPOINT": "127.0.0.1:9",
    }
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")

    def loaded(commands: list[list[str]]) -> list[str]:
        code = COMMANDS_PROBE.format(commands=commands)
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout.strip().splitlines()[-1])

    reading = loaded([["status", "--json"], ["albums", "--user", "alice"], ["model", "list"]])
    assert _top_level(reading, (*HEAVY, "minio")) == []
    assert "sqlalchemy" in {m.split(".")[0] for m in reading}  # the commands did run
    assert _top_level(loaded([["upload", "--user", "alice", str(photo)]]), HEAVY) == []


STATUS_PROBE = """
import contextlib, json, sys
from datetime import datetime, timezone
import workers.runtime

def rows(sql, params=None):  # PostgreSQL's answers for an empty fleet
    if "now()" in sql:
        return [(datetime.now(timezone.utc),)]
    return [(0,)] if sql.startswith("SELECT count(*) FROM task_failures") else []

workers.runtime.db_rows = lambda: contextlib.nullcontext(rows)
from workers.cli.main import app
try:
    app(["status", "--json"], prog_name="landmarks")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print(json.dumps(sorted(sys.modules)))
"""


def test_status_reads_the_broker_and_database_without_celery_or_sqlalchemy() -> None:
    """`status` (issue 21: 1.5-3 s) reads Redis with redis-py and PostgreSQL with plain SQL on psycopg2: importing
    Celery/kombu, SQLAlchemy and the models, and waiting for a broadcast ping, were most of its time."""
    import os

    env = {**os.environ, "LANDMARKS_BROKER_URL": "redis://127.0.0.1:9/0"}  # refused at once: the broker is down
    run = subprocess.run([sys.executable, "-c", STATUS_PROBE], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    *output, modules = run.stdout.strip().splitlines()
    status = json.loads("\n".join(output))
    assert status["broker"]["reachable"] is False and status["photos"]["pending"] == 0  # both parts ran
    loaded = {m.split(".")[0] for m in json.loads(modules)}
    assert "redis" in loaded
    assert loaded & {"celery", "kombu", "sqlalchemy", *HEAVY, "minio"} == set()
