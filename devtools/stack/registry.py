"""PID files in ``<state>/run``: which processes `dev up` started, so `dev down` stops exactly those.

A record holds the PID, the process's start time (see :mod:`devtools.stack.proc`) and its process group, so a
stale file (process gone, PID reused by another program) is recognised and never acted on.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devtools.stack import proc


@dataclass(frozen=True)
class PidRecord:
    name: str
    pid: int
    start_time: int
    pgid: int
    argv: list[str] = field(default_factory=list)
    log: str = ""
    address: str = ""

    @classmethod
    def for_pid(cls, name: str, pid: int, *, argv: list[str], log: Path, address: str = "") -> PidRecord:
        """Record a live process; raises ProcessLookupError when it already exited."""
        info = proc.stat(pid)
        if info is None or info.zombie:
            raise ProcessLookupError(f"{name}: process {pid} exited")
        return cls(name, pid, info.start_time, info.pgid, list(argv), str(log), address)

    def running(self) -> bool:
        """The recorded process is alive and is still the one we started."""
        return proc.is_running(self.pid, self.start_time)


class Registry:
    """PID files of one state folder, one JSON file per service name."""

    def __init__(self, state_dir: Path) -> None:
        self.run_dir = Path(state_dir) / "run"

    def path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def write(self, record: PidRecord) -> None:
        """Write atomically, so a crash never leaves a half-written file that hides a running process."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        target = self.path(record.name)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1))
        os.replace(tmp, target)

    def read(self, name: str) -> PidRecord | None:
        """The record, or None when there is none or it is unreadable (treated as absent)."""
        try:
            data = json.loads(self.path(name).read_text())
            return PidRecord(**data)
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def live(self, name: str) -> PidRecord | None:
        """The record if its process is running; a stale record (process gone or PID reused) gives None."""
        record = self.read(name)
        return record if record is not None and record.running() else None

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise `up` and `down` on one state folder: two at once could both start the same service.

        The descriptor is not inherited by the processes we spawn (PEP 446), so the lock ends with the command.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.run_dir.glob("*.pid"))
