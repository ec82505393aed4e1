"""The metrics endpoint `landmarks dev up` starts (``python -m workers.metrics``): it serves what worker processes
wrote to the multiprocess folder, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(url: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_endpoint_serves_the_workers_counts_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "LANDMARKS_STATE_DIR": str(tmp_path)}
    writer = textwrap.dedent(
        f"""
        from pathlib import Path
        from workers import metrics
        metrics.enable_multiprocess(Path({str(tmp_path / "metrics")!r}))
        metrics.metrics().photo_outcome({{"action": "recognized", "landmark": "colosseum"}}, 0.3)
        """
    )
    written = subprocess.run([sys.executable, "-c", writer], cwd=REPO_ROOT, capture_output=True, text=True)
    assert written.returncode == 0, written.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "workers.metrics", "--port", str(port)], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        text = scrape(f"http://127.0.0.1:{port}/metrics")
        assert "landmarks_photos_recognized_total 1.0" in text
        assert 'landmarks_photos_processed_total{outcome="landmark"} 1.0' in text
        assert "landmarks_recognition_latency_seconds_bucket" in text
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
