"""docs/architecture.md matches the code: the upload's path names files and functions that exist, in at most 8
files, and shared/ keeps only its four loose modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
LOOSE_ALLOWED = {"__init__.py", "settings.py", "storage.py", "index.py", "errors.py"}


def upload_path() -> list[tuple[str, str]]:
    """(file, function) per row of the upload-path table."""
    rows = re.findall(r"^\| \d+ \| `([^`]+)` \| `([^`]+)` \|", DOC.read_text(), re.M)
    assert rows, "docs/architecture.md has no upload-path table"
    return rows


def top_level_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_the_upload_path_crosses_at_most_eight_files() -> None:
    files = [f for f, _ in upload_path()]
    assert len(set(files)) == len(files) <= 8


def test_every_step_names_a_function_its_file_defines() -> None:
    for file, function in upload_path():
        path = REPO / file
        assert path.is_file(), f"{file} is named in docs/architecture.md but does not exist"
        assert function in top_level_functions(path), f"{file} defines no {function}()"


def test_the_steps_hand_over_to_each_other() -> None:
    """Each task calls the shared step after it, and each step enqueues or calls the next, as the table says."""
    source = {file: (REPO / file).read_text() for file, _ in upload_path()}
    assert "record_created" in source["tasks/ingest.py"] and "recognize_photo.delay" in source["tasks/ingest.py"]
    assert "recognize_object" in source["tasks/recognition.py"]
    assert "from tasks.albums import apply_recognition" in source["tasks/recognition.py"]
    assert "apply_recognition" in source["tasks/albums.py"]
    assert "from shared.photos import apply" in source["tasks/albums.py"]


def test_shared_keeps_only_its_four_loose_modules() -> None:
    loose = {p.name for p in (REPO / "shared").glob("*.py")}
    assert loose <= LOOSE_ALLOWED, f"modules outside a package: {sorted(loose - LOOSE_ALLOWED)}"


def test_every_shared_package_says_what_it_owns() -> None:
    for init in (REPO / "shared").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(REPO)} has no docstring saying what the package owns"
