"""Start a process detached in its own session with its log in the state folder; stop its whole group.

Each process gets its own session (``start_new_session``), so it outlives the `dev up` command, gets no SIGHUP
from the terminal, and its process group holds its children too (Celery's pool processes), which is what
`dev down` signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from devtools.stack import proc
from devtools.stack.readiness import Probe
from devtools.stack.registry import PidRecord

POLL_S = 0.2


def log_path(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "logs" / f"{name}.log"


def log_tail(path: Path | str, lines: int = 15) -> str:
    """The last lines of a log file, for error messages ('' when there is no log)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16_384))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    address: str = "",
) -> PidRecord:
    """Start `argv` in a new session, stdout and stderr appended to `log`; returns its PID record."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        out.flush()
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        return PidRecord.for_pid(name, child.pid, argv=list(argv), log=log, address=address)
    except ProcessLookupError:
        child.wait()
        raise


def wait_ready(record: PidRecord, check: Probe, timeout: float) -> str | None:
    """Poll `check` until it passes; returns None when ready, else why not (with the log's tail)."""
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if not record.running():
            proc.reap(record.pid)
            return f"exited during start-up\n{log_tail(record.log)}"
        if check.probe(elapsed):
            return None
        if elapsed > timeout:
            return f"not ready after {timeout:g} s ({check.description})\n{log_tail(record.log)}"
        time.sleep(POLL_S)


def _strays(record: PidRecord) -> list[int]:
    """Live members of the record's process group that started no earlier than the leader.

    A later group reusing the number would have started after the leader died and been counted too, but it
    could only exist once our whole group was gone, and the leader's start time bounds it: good enough for dev.
    """
    return [m.pid for m in proc.group_members(record.pgid) if m.start_time >= record.start_time]


def _leader_gone(record: PidRecord) -> bool:
    proc.reap(record.pid)
    return not record.running()


def _ours_left(record: PidRecord) -> list[int]:
    pids = _strays(record)
    if not _leader_gone(record) and record.pid not in pids:
        pids.append(record.pid)
    return pids


def _send(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def stop(record: PidRecord, *, grace: float = 10.0) -> str | None:
    """Stop the process and everything left in its group; returns None when nothing of ours is left.

    SIGTERM goes to the leader first, so it can shut down in order (a Celery worker finishes its tasks and stops
    its pool itself); after `grace` seconds whatever is left of the group gets SIGTERM, then SIGKILL.
    """
    if record.running():
        _send([record.pid], signal.SIGTERM)
        _wait(lambda: _leader_gone(record), grace)
    for sig, wait in ((signal.SIGTERM, min(grace, 2.0)), (signal.SIGKILL, 5.0)):
        left = _ours_left(record)
        if not left:
            return None
        _send(left, sig)
        if _wait(lambda: not _ours_left(record), wait):
            return None
    return f"process group {record.pgid} still has processes after SIGKILL"
