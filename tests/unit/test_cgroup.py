"""devtools.stack.cgroup: the memory limit the fault suite puts on a worker kills what passes it, and counts it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from devtools.stack.cgroup import MemoryCgroup


@pytest.fixture
def cgroup() -> Iterator[MemoryCgroup]:
    made = MemoryCgroup.create(f"landmarks-unit-{uuid.uuid4().hex[:8]}")
    if made is None:
        pytest.skip("no memory cgroup can be made here (needs root and a writable /sys/fs/cgroup)")
    try:
        yield made
    finally:
        made.remove()


def run_inside(cgroup: MemoryCgroup, code: str) -> subprocess.CompletedProcess[str]:
    argv = cgroup.wrap((sys.executable, "-c", code))
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_a_process_past_the_limit_is_killed_by_the_kernel_and_counted(cgroup: MemoryCgroup) -> None:
    cgroup.set_limit(96 << 20)
    done = run_inside(cgroup, "block = bytearray(400 << 20); print('survived')")
    assert done.returncode == -9 and "survived" not in done.stdout  # SIGKILL, not a MemoryError
    assert cgroup.oom_kills() == 1
    assert cgroup.peak() <= 96 << 20


def test_a_process_under_the_limit_runs_and_its_peak_is_measured(cgroup: MemoryCgroup) -> None:
    cgroup.set_limit(512 << 20)
    done = run_inside(cgroup, "block = bytearray(64 << 20); block[::4096] = b'x' * len(block[::4096]); print('ok')")
    assert done.returncode == 0 and done.stdout.strip() == "ok"
    assert cgroup.oom_kills() == 0
    assert 64 << 20 <= cgroup.peak() <= 512 << 20
