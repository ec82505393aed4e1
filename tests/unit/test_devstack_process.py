"""Readiness probes, log tails and start-up waiting, with local stand-in processes (no services)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

from devtools.stack import process
from devtools.stack.readiness import Answers, PortOpen, StaysAlive
from devtools.stack.registry import Registry


def test_stays_alive_after_its_period() -> None:
    probe = StaysAlive(2.0)
    assert not probe.probe(1.9)
    assert probe.probe(2.0)


def test_port_open_on_a_listening_socket() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert PortOpen("127.0.0.1", port).probe(0.0)
    assert not PortOpen("127.0.0.1", port).probe(0.0)


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))

    assert process.log_tail(log, lines=3) == "line 97\nline 98\nline 99"
    assert process.log_tail(tmp_path / "missing.log") == ""


def test_spawn_logs_and_detaches(tmp_path: Path) -> None:
    log = process.log_path(tmp_path, "echo")
    record = process.spawn("echo", [sys.executable, "-c", "print('hello from child', flush=True)"], log=log)

    assert record.pgid == record.pid  # its own process group, hence its own session
    assert process.wait_ready(record, StaysAlive(60.0), timeout=30.0) is not None  # it exits: not ready
    assert "hello from child" in log.read_text()
    assert "starting echo" in log.read_text()


def test_wait_ready_reports_a_probe_that_never_passes(tmp_path: Path) -> None:
    log = process.log_path(tmp_path, "sleepy")
    record = process.spawn("sleepy", [sys.executable, "-c", "import time; time.sleep(30)"], log=log)
    try:
        problem = process.wait_ready(record, Answers("never", lambda: False), timeout=0.3)
        assert problem is not None and problem.startswith("not ready after 0.3 s (never)")
    finally:
        assert process.stop(record, grace=2.0) is None
    assert not record.running()


def test_spawn_passes_extra_environment(tmp_path: Path) -> None:
    log = process.log_path(tmp_path, "env")
    code = "import os; print('VALUE=' + os.environ['DEVSTACK_TEST_VALUE'], flush=True)"
    record = process.spawn("env", [sys.executable, "-c", code], log=log, env={"DEVSTACK_TEST_VALUE": "42"})
    process.wait_ready(record, StaysAlive(60.0), timeout=30.0)

    assert "VALUE=42" in log.read_text()


def test_lock_serialises_commands(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    order: list[str] = []

    def second() -> None:
        with registry.lock():
            order.append("second")

    with registry.lock():
        # The other command runs in a separate process in real life; flock also excludes another open file.
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=0.3)
        order.append("first")
    thread.join()
    assert order == ["first", "second"]


def test_lock_is_not_inherited_by_spawned_processes(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    with registry.lock():
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        done = threading.Event()

        def relock() -> None:
            with registry.lock():
                done.set()

        threading.Thread(target=relock, daemon=True).start()
        assert done.wait(timeout=10.0), "the lock is still held after the command ended"
    finally:
        child.kill()
        child.wait()
