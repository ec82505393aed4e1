"""Install a missing Debian package (PostgreSQL, Redis) so `dev up` works on a clean machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache


class InstallError(RuntimeError):
    pass


@cache
def _apt_update() -> None:
    """Refresh the package lists once per process (the first install needs them; later ones do not)."""
    _run(["apt-get", "update"])


def _run(argv: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-10:])
        raise InstallError(f"{' '.join(argv)} failed (exit {done.returncode}):\n{tail}")


def apt_install(package: str) -> None:
    """`apt-get install -y <package>`; a clear error when that is impossible (no apt, not root)."""
    if shutil.which("apt-get") is None:
        raise InstallError(f"{package} is not installed and apt-get is not available; install it by hand")
    if os.geteuid() != 0:
        raise InstallError(f"{package} is not installed; run `sudo apt-get install -y {package}` first")
    _apt_update()
    _run(["apt-get", "install", "-y", "--no-install-recommends", package])
