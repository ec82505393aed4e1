"""The README and docs/ name only settings that exist (issue 21 item 7: "do not invent settings"): every
``LANDMARKS_*`` variable and every ``group.field`` setting they mention is a field of shared.settings.Settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
VARIABLE = re.compile(r"(?<![A-Za-z0-9_])LANDMARKS_[A-Z0-9_]*[A-Z0-9]")
DOTTED = re.compile(r"`(recognition|gallery|s3|seaweed|flower)\.([a-z_]+)`")


def _variables(model: type[BaseModel] = Settings, prefix: str = "LANDMARKS_") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names.add(prefix + name.upper())
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= _variables(field.annotation, f"{prefix}{name.upper()}__")
    return names


def _task_names() -> set[str]:
    from workers.celery_app import app

    app.loader.import_default_modules()
    return set(app.tasks)


def test_the_docs_pages_exist() -> None:
    assert {p.name for p in DOCS} >= {"README.md", "own-photo-service.md", "research-notes.md"}


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_setting_named_is_real(page: Path) -> None:
    text = page.read_text()
    known = _variables()
    unknown = sorted({v for v in VARIABLE.findall(text) if v not in known})
    assert not unknown, f"{page.name} names settings that do not exist: {unknown}"
    groups = {name: field.annotation for name, field in Settings.model_fields.items()}
    named = {f"{g}.{f}" for g, f in DOTTED.findall(text)} - _task_names()  # `recognition.recognize_photo` is a task
    wrong = sorted(n for n in named if n.split(".")[1] not in groups[n.split(".")[0]].model_fields)
    assert not wrong, f"{page.name} names settings that do not exist: {wrong}"
