"""The hashed lock files in requirements/ against pyproject.toml (#19 item 15).

`make venv` installs requirements/lock.txt and the image requirements/runtime.txt, both hash-checked and without
dependency resolution, so the lock must hold an exact, hashed pin for every requirement that satisfies it: a
dependency added to pyproject.toml, or a raised minimum, fails here until `make lock` has run.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "requirements"
LOCKS = ("pip.txt", "lock.txt", "runtime.txt", "no-deps.txt")
# The lock is resolved for the platform `make venv` and the image run on.
LOCK_ENVIRONMENT = {**default_environment(), "python_version": "3.11", "sys_platform": "linux", "os_name": "posix"}


@cache
def lock_reader() -> Any:
    """deploy/docker/requirements.py, the image's reader of the same files."""
    path = REPO_ROOT / "deploy" / "docker" / "requirements.py"
    spec = importlib.util.spec_from_file_location("deploy_requirements_for_lock", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins(lock: str) -> dict[str, Any]:
    found = lock_reader().read_lock(REQUIREMENTS / lock)
    names = [p.name for p in found]
    assert len(names) == len(set(names)), f"{lock}: a package pinned twice"
    return {p.name: p for p in found}


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def declared(*, dev: bool) -> list[Requirement]:
    project = pyproject()["project"]
    listed = list(project["dependencies"]) + (list(project["optional-dependencies"]["dev"]) if dev else [])
    return [Requirement(r) for r in listed]


def unmet(requirements: list[Requirement], locked: dict[str, Any]) -> list[str]:
    """Requirements without a pin in ``locked`` that satisfies their specifier (markers of the lock's platform)."""
    problems = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(LOCK_ENVIRONMENT):
            continue
        pin = locked.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement}: not pinned")
        elif not requirement.specifier.contains(Version(pin.version), prereleases=True):
            problems.append(f"{requirement}: locked at {pin.version}")
    return problems


@pytest.mark.parametrize(("lock", "dev"), [("lock.txt", True), ("runtime.txt", False)])
def test_every_requirement_of_pyproject_has_a_pin_in_the_lock_that_satisfies_it(lock: str, dev: bool) -> None:
    assert unmet(declared(dev=dev), pins(lock)) == []


@pytest.mark.parametrize("lock", ["lock.txt", "runtime.txt"])
def test_the_build_requirements_are_in_the_lock(lock: str) -> None:
    """`make venv` and the image install the project with --no-build-isolation: its build backend comes from the
    lock too (setuptools is there through torch; pin it in pyproject if that ever changes)."""
    requires = [Requirement(r) for r in pyproject()["build-system"]["requires"]]
    assert unmet(requires, pins(lock)) == []


def test_a_requirement_the_lock_does_not_satisfy_is_found() -> None:
    """The check itself: a raised minimum, a new package and a pin below a floor are each reported."""
    locked = pins("lock.txt")
    pillow = locked["pillow"].version
    requirements = [Requirement(f"pillow>{pillow}"), Requirement("no-such-package>=1"), Requirement("pillow>=12.1.1")]
    assert unmet(requirements, locked) == [f"pillow>{pillow}: locked at {pillow}", "no-such-package>=1: not pinned"]


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pin_is_exact_and_hashed(lock: str) -> None:
    locked = pins(lock)
    assert locked, f"{lock} pins nothing"
    unhashed = [name for name, pin in locked.items() if not pin.hashes]
    assert unhashed == [], f"{lock}: pins without a hash (pip --require-hashes refuses the whole file)"
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for pin in locked.values() for h in pin.hashes)


def test_a_loose_requirement_in_a_lock_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "loose.txt"
    loose.write_text("pillow>=12.1.1 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        lock_reader().read_lock(loose)


def test_the_image_lock_is_the_venv_lock_less_the_dev_tools() -> None:
    """Same versions and files in both: the image runs what `make test` tested."""
    full, runtime = pins("lock.txt"), pins("runtime.txt")
    assert set(runtime) <= set(full)
    assert {n: (p.version, set(p.hashes)) for n, p in runtime.items()} == {
        n: (full[n].version, set(full[n].hashes)) for n in runtime
    }
    assert {"pytest", "ruff", "playwright"} <= set(full) - set(runtime)


def test_packages_installed_without_their_dependencies_stay_outside_the_resolution() -> None:
    """celery-batches 0.11 declares celery<5.7: resolved with the rest it would pull celery back to 5.6."""
    no_deps = pins("no-deps.txt")
    assert set(no_deps) == {"celery-batches"}
    assert not set(no_deps) & set(pins("lock.txt"))
    assert pins("lock.txt")["celery"].version == "5.7.0"
    assert set(pins("pip.txt")) == {"pip"}


def test_make_and_the_image_install_only_from_the_locks_with_hashes() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\nvenv:", 1)[0]
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert installs, "the venv target installs nothing"
    for line in installs:
        hashed = re.search(r"--require-hashes (--no-deps )?-r requirements/", line) is not None
        assert hashed or line.endswith("--no-deps --no-build-isolation -e ."), line
    assert {f"requirements/{name}" for name in ("pip.txt", "lock.txt", "no-deps.txt")} <= set(
        re.findall(r"-r (requirements/\S+)", recipe)
    )
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    for line in re.findall(r"pip install [^\n]*", dockerfile):
        hashed = "--require-hashes" in line
        torch_index = '--index-url "${TORCH_INDEX_URL}" -r /tmp/torch.txt' in line
        assert hashed or torch_index or "--no-deps --no-build-isolation --editable ." in line, line


# Releases with a known vulnerability that pyproject's minimums must exclude (fixed in the release after them).
VULNERABLE = [
    ("pillow", "12.1.0", "PSD out-of-bounds write, fixed in 12.1.1"),
    ("python-multipart", "0.0.17", "CVE-2024-53981, fixed in 0.0.18"),
    ("python-multipart", "0.0.21", "CVE-2026-24486, fixed in 0.0.22"),
    ("jinja2", "3.1.5", "CVE-2025-27516, fixed in 3.1.6"),
    ("starlette", "0.49.0", "CVE-2025-62727, fixed in 0.49.1"),
    ("urllib3", "2.6.2", "CVE-2026-21441, fixed in 2.6.3"),
    ("h11", "0.15.0", "CVE-2025-43859, fixed in 0.16.0"),
    ("tornado", "6.4.2", "CVE-2025-47287, fixed in 6.5"),
    ("idna", "3.6", "CVE-2024-3651, fixed in 3.7"),
    ("protobuf", "5.29.4", "CVE-2025-4565, fixed in 5.29.5"),
]


@pytest.mark.parametrize(("name", "version", "why"), VULNERABLE)
def test_pyproject_admits_no_release_with_a_known_fix_missing(name: str, version: str, why: str) -> None:
    [requirement] = [r for r in declared(dev=False) if canonicalize_name(r.name) == name]
    assert not requirement.specifier.contains(version), f"{requirement} admits {version}: {why}"


def test_the_build_backend_minimum_excludes_the_vulnerable_setuptools() -> None:
    [setuptools] = [Requirement(r) for r in pyproject()["build-system"]["requires"] if r.startswith("setuptools")]
    assert not setuptools.specifier.contains("78.1.0"), "CVE-2025-47273, fixed in 78.1.1"
