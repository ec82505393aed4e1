"""Print the project's runtime dependencies from pyproject.toml, one per line, for the image's cached pip layers.

The Dockerfile installs dependencies before copying the source, so a code change does not reinstall torch; it
installs torch and torchvision on their own from the PyTorch index the build chose (CPU or a CUDA build), then
everything else from PyPI, where the pinned torch is already satisfied.

    python requirements.py pyproject.toml --only torch,torchvision
    python requirements.py pyproject.toml --exclude torch,torchvision
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalised name: `Torch_Vision` and `torch-vision` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match.group(1))


def dependencies(pyproject: Path, *, only: set[str] | None = None, exclude: set[str] = frozenset()) -> list[str]:
    """The `[project] dependencies` of ``pyproject``, filtered by (normalised) package name."""
    listed = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    only_names = {canonical(n) for n in only} if only is not None else None
    skip = {canonical(n) for n in exclude}
    picked = []
    for requirement in listed:
        name = requirement_name(requirement)
        if (only_names is None or name in only_names) and name not in skip:
            picked.append(requirement.split("#", 1)[0].strip())
    if only_names is not None and (missing := only_names - {requirement_name(r) for r in picked}):
        raise ValueError(f"not among the dependencies: {', '.join(sorted(missing))}")
    return picked


def _names(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--only", type=_names, help="comma-separated package names to keep")
    group.add_argument("--exclude", type=_names, default=set(), help="comma-separated package names to drop")
    args = parser.parse_args(argv)
    try:
        lines = dependencies(args.pyproject, only=args.only, exclude=args.exclude)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
