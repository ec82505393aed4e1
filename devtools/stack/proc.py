"""What /proc says about a process: its start time (which, with the PID, names one process for good) and group.

A PID alone is not an identity: after a reboot or a wrap-around another program may hold it. The start time in
``/proc/<pid>/stat`` (clock ticks since boot) does not change when a program renames itself (Celery, Postgres
do), so the pair (pid, start time) is how the registry recognises its own processes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgid: int
    start_time: int

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line; the command name may hold spaces and parentheses."""
    head, _, tail = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = tail.split()
    # fields[0] is field 3 (state) of proc(5); start time is field 22.
    return ProcStat(pid=pid, state=fields[0], ppid=int(fields[1]), pgid=int(fields[2]), start_time=int(fields[19]))


def stat(pid: int) -> ProcStat | None:
    """The process's stat, or None when there is no such process."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """Start time of a live (non-zombie) process, or None."""
    info = stat(pid)
    return None if info is None or info.zombie else info.start_time


def is_running(pid: int, started: int) -> bool:
    """True when `pid` is alive and is the very process that started at `started` (not a reused PID)."""
    return pid > 0 and start_time(pid) == started


def cmdline(pid: int) -> list[str]:
    """The argument vector of a process (empty when gone or a kernel thread)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def group_members(pgid: int) -> list[ProcStat]:
    """Live processes in process group `pgid` (zombies excluded: they hold no resources and cannot be killed)."""
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = stat(int(entry.name))
            if info is not None and info.pgid == pgid and not info.zombie:
                members.append(info)
    return members


def reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
