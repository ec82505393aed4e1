"""Start-and-wait and stop-what-we-recorded, shared by every service run as our own child process."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from devtools.stack import process
from devtools.stack.outcome import Outcome
from devtools.stack.readiness import Probe
from devtools.stack.registry import PidRecord, Registry


def launch(
    registry: Registry,
    name: str,
    argv: Sequence[str],
    *,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    address: str = "",
) -> PidRecord | Outcome:
    """Spawn and record the PID; an Outcome instead when it could not even be started."""
    log = process.log_path(state_dir, name)
    try:
        record = process.spawn(name, argv, log=log, env=env, address=address)
    except OSError as exc:  # binary missing or not executable
        return Outcome(name, "failed", None, address, f"cannot run {argv[0]}: {exc}")
    except ProcessLookupError:
        return Outcome(name, "failed", None, address, f"exited at once\n{process.log_tail(log)}")
    registry.write(record)
    return record


def settle(registry: Registry, record: PidRecord, ready: Probe, timeout: float) -> Outcome:
    """Wait for readiness; on failure stop what is left and say why (with the log's tail)."""
    problem = process.wait_ready(record, ready, timeout)
    if problem is not None:
        process.stop(record)
        registry.remove(record.name)
        return Outcome(record.name, "failed", None, record.address, problem)
    return Outcome(record.name, "started", record.pid, record.address)


def start(
    registry: Registry,
    name: str,
    argv: Sequence[str],
    *,
    state_dir: Path,
    ready: Probe,
    timeout: float,
    env: Mapping[str, str] | None = None,
    address: str = "",
) -> Outcome:
    """Launch, then wait until ready."""
    launched = launch(registry, name, argv, state_dir=state_dir, env=env, address=address)
    return launched if isinstance(launched, Outcome) else settle(registry, launched, ready, timeout)


def left_alone(name: str, address: str) -> Outcome:
    """`down` for a server someone else runs: we never stop what we did not start."""
    return Outcome(name, "reused", None, address, "not started by dev up: left running")


def stop(registry: Registry, name: str, *, address: str = "", grace: float = 10.0) -> Outcome:
    """Stop the process group recorded under `name`, if any; servers we did not start are never touched."""
    record = registry.read(name)
    if record is None:
        return Outcome(name, "stopped", None, address)
    pid = record.pid if record.running() else None
    problem = process.stop(record, grace=grace)
    if problem is not None:
        return Outcome(name, "failed", record.pid, address, problem)
    registry.remove(name)
    return Outcome(name, "stopped", pid, address, "" if pid else "was not running (stale PID file removed)")
