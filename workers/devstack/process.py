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
from collections.abc import Mapping, Sequence
from pathlib import Path

from workers.devstack import proc
from workers.devstack.readiness import Probe
from workers.devstack.registry import PidRecord

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


def _signal_group(record: PidRecord, sig: int) -> None:
    """Signal the record's process group, or only its stray members when the leader is gone.

    Members are only trusted when they started no earlier than the leader (a later group with a reused number
    would not have, but strays of ours always do).
    """
    if record.running():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pgid, sig)
        return
    for member in proc.group_members(record.pgid):
        if member.start_time >= record.start_time:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, sig)


def _ours_left(record: PidRecord) -> bool:
    proc.reap(record.pid)
    if record.running():
        return True
    return any(m.start_time >= record.start_time for m in proc.group_members(record.pgid))


def stop(record: PidRecord, *, grace: float = 10.0) -> str | None:
    """SIGTERM the group, wait up to `grace` seconds, then SIGKILL; returns None when nothing of ours is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not _ours_left(record):
            return None
        _signal_group(record, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _ours_left(record):
                return None
            time.sleep(POLL_S)
    return f"process group {record.pgid} still has processes after SIGKILL"
