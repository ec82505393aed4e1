"""A memory cgroup for a process the tests start: a real memory limit, as a container's (tests/faults)."""

from __future__ import annotations

import time
from pathlib import Path


class MemoryCgroup:
    """A memory cgroup of the suite's own (v1 or v2), to cap a worker as a container's memory limit does: past the
    limit the kernel's OOM killer SIGKILLs the largest process inside, no Python exception on the way."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path = path
        self.v2 = v2

    @classmethod
    def create(cls, name: str) -> MemoryCgroup | None:
        """A new cgroup below this process's own memory cgroup, or None where none can be made (no root, no
        memory controller, a read-only /sys/fs/cgroup)."""
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        if v2:
            parent = Path("/sys/fs/cgroup")  # the root: the only v2 cgroup with processes that may have children
        else:
            own = next((line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
                        if line.split(":", 2)[1] == "memory"), None)  # fmt: skip
            if own is None:
                return None
            parent = Path("/sys/fs/cgroup/memory") / own.strip().lstrip("/")
        path = parent / name
        try:
            path.mkdir()
        except OSError:
            return None
        cgroup = cls(path, v2)
        if not (path / cgroup._limit_file).exists():
            cgroup.remove()
            return None
        return cgroup

    @property
    def _limit_file(self) -> str:
        return "memory.max" if self.v2 else "memory.limit_in_bytes"

    def wrap(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        """``argv`` run inside the cgroup: a shell joins it and execs the command (same pid, so the registry's
        record and process group stay those of the command; forked children inherit the cgroup)."""
        return ("/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv)

    def set_limit(self, limit_bytes: int) -> None:
        (self.path / self._limit_file).write_text(str(limit_bytes))

    def peak(self) -> int:
        """Most memory charged to the cgroup so far (RSS and page cache of everything inside)."""
        return int((self.path / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes")).read_text())

    def oom_kills(self) -> int:
        """Processes the OOM killer killed in the cgroup (v1 kernels from 4.13 count them in oom_control)."""
        text = (self.path / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", 0))

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (a reaped process can linger for a moment)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
