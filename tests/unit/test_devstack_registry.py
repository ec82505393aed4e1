"""The PID registry: round trip, and a recorded PID counts as ours only while that very process lives."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.stack import proc
from devtools.stack.registry import PidRecord, Registry


def test_record_round_trip(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    record = PidRecord.for_pid("me", os.getpid(), argv=["python", "-m", "x"], log=tmp_path / "me.log", address="a:1")
    registry.write(record)

    assert registry.read("me") == record
    assert registry.names() == ["me"]
    assert (tmp_path / "run" / "me.pid").exists()
    registry.remove("me")
    assert registry.read("me") is None
    assert registry.names() == []


def test_live_process_is_ours(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write(PidRecord.for_pid("me", os.getpid(), argv=[], log=tmp_path / "log"))

    live = registry.live("me")
    assert live is not None and live.pid == os.getpid()


def test_exited_process_is_stale(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    record = PidRecord.for_pid("gone", child.pid, argv=[], log=tmp_path / "log")
    child.wait()
    registry = Registry(tmp_path)
    registry.write(record)

    assert not record.running()
    assert registry.live("gone") is None
    assert registry.read("gone") == record  # reading has no side effect; `down` removes stale files


def test_reused_pid_is_not_ours(tmp_path: Path) -> None:
    """Same PID, different start time: another program got the number, so it must not be touched."""
    mine = PidRecord.for_pid("me", os.getpid(), argv=[], log=tmp_path / "log")
    impostor = PidRecord(mine.name, mine.pid, mine.start_time - 1, mine.pgid)

    assert mine.running()
    assert not impostor.running()


def test_zombie_is_not_running(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    record = PidRecord.for_pid("z", child.pid, argv=[], log=tmp_path / "log")
    # Not reaped yet: once it exits it is a zombie, which must count as gone.
    for _ in range(500):
        info = proc.stat(child.pid)
        if info is not None and info.zombie:
            break
        time.sleep(0.01)
    assert info is not None and info.zombie
    assert not record.running()
    child.wait()


def test_for_pid_of_missing_process_raises(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        PidRecord.for_pid("gone", child.pid, argv=[], log=tmp_path / "log")


@pytest.mark.parametrize("content", ["", "{not json", '{"name": "x"}', '["a"]'])
def test_unreadable_pid_file_counts_as_absent(tmp_path: Path, content: str) -> None:
    registry = Registry(tmp_path)
    registry.run_dir.mkdir(parents=True)
    registry.path("x").write_text(content)

    assert registry.read("x") is None
    assert registry.live("x") is None


def test_parse_stat_with_spaces_and_parentheses_in_name() -> None:
    line = "4242 (my (odd) prog) S 1 4240 4240 0 -1 4194560 " + " ".join(["0"] * 12) + " 987654 rest 1 2 3"
    info = proc.parse_stat(line)

    assert (info.pid, info.state, info.ppid, info.pgid, info.start_time) == (4242, "S", 1, 4240, 987654)
    assert not info.zombie


def test_own_stat_matches_os() -> None:
    info = proc.stat(os.getpid())

    assert info is not None
    assert info.pid == os.getpid()
    assert info.pgid == os.getpgid(0)
    assert info.ppid == os.getppid()
