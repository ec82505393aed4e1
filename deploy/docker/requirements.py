"""Print pins of a hashed lock file (requirements/lock.txt), filtered by package name, for the image's pip layers.

The image installs the lock with its hashes, less torch, torchvision and the CUDA libraries that PyPI's Linux torch
wheel brings (nvidia-*, cuda-*, triton), then torch and torchvision at the locked versions from the PyTorch index
the build chose (CPU or a CUDA build). Their files differ per index, so they are pinned by version there; on a CUDA
build that index also brings its own CUDA libraries.

    python requirements.py requirements/lock.txt --exclude torch,torchvision,nvidia-*,cuda-*,triton
    python requirements.py requirements/lock.txt --only torch,torchvision --no-hashes
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from pathlib import Path
from typing import NamedTuple

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


def canonical(name: str) -> str:
    """PEP 503 normalised name: `Torch_Vision` and `torch-vision` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


class Pin(NamedTuple):
    name: str  # canonical
    version: str
    hashes: tuple[str, ...]

    def line(self, *, hashes: bool = True) -> str:
        if not hashes:
            return f"{self.name}=={self.version}"
        return " \\\n    ".join([f"{self.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)])


def read_lock(path: Path) -> list[Pin]:
    """The pins of a pip-compile (or hand-written) requirements file: ``name==version`` with its ``--hash`` lines.

    Continuation lines are joined first; comments and options are skipped. Anything else is refused, so a loose
    requirement (``name>=1``) or a URL never slips through unpinned.
    """
    text = re.sub(r"\\\n", " ", path.read_text())
    pins = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{path}: not an exact pin: {line!r}")
        pins.append(Pin(canonical(match.group(1)), match.group(2).split(";", 1)[0], tuple(_HASH.findall(line))))
    return pins


def _matches(name: str, patterns: set[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, canonical(p)) for p in patterns)


def select(pins: list[Pin], *, only: set[str] | None = None, exclude: set[str] = frozenset()) -> list[Pin]:
    """The pins whose name matches one of ``only`` (all when None) and none of ``exclude`` (globs allowed)."""
    picked = [p for p in pins if (only is None or _matches(p.name, only)) and not _matches(p.name, exclude)]
    if only is not None:
        missing = {n for n in only if "*" not in n and canonical(n) not in {p.name for p in picked}}
        if missing:
            raise ValueError(f"not in the lock: {', '.join(sorted(missing))}")
    return picked


def _names(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--only", type=_names, help="comma-separated package names (globs) to keep")
    group.add_argument("--exclude", type=_names, default=set(), help="comma-separated package names (globs) to drop")
    parser.add_argument("--no-hashes", action="store_true", help="print name==version only")
    args = parser.parse_args(argv)
    try:
        pins = select(read_lock(args.lock), only=args.only, exclude=args.exclude)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(p.line(hashes=not args.no_hashes) for p in pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
