"""GPU recognize workers in deploy/ prefetch enough messages to fill their micro-batches; CPU ones stay at 1.

The device each deployment sets decides the batch (shared/model/accelerator.py); the command line's prefetch must hold
two batches per pool process, as `landmarks dev up` gives its own recognize worker.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from shared.model.accelerator import micro_batch_prefetch
from shared.settings import RecognitionSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def prefetch(argv: list[str]) -> int:
    """The worker's prefetch multiplier per pool process (Celery's default, 1 here, when not given)."""
    return int(argv[argv.index("--prefetch-multiplier") + 1]) if "--prefetch-multiplier" in argv else 1


def concurrency(argv: list[str]) -> int:
    return int(argv[argv.index("--concurrency") + 1])


def needed(device: str) -> int:
    return micro_batch_prefetch(RecognitionSettings(device=device)) or 1


def k8s_worker(name: str) -> tuple[list[str], dict[str, str]]:
    [doc] = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d and d["kind"] == "Deployment"]
    [container] = doc["spec"]["template"]["spec"]["containers"]
    return container["command"], {e["name"]: e["value"] for e in container.get("env", [])}


def test_compose_recognize_workers() -> None:
    services = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())["services"]
    for name in ("recognize-gpu", "recognize-cpu"):
        service = services[name]
        device = service["environment"]["LANDMARKS_RECOGNITION__DEVICE"]
        assert prefetch(service["command"]) == needed(device), name
    assert needed("cuda") > 1 and needed("cpu") == 1


def test_kubernetes_recognize_workers() -> None:
    for name in ("recognize-gpu.yaml", "recognize-cpu.yaml"):
        command, env = k8s_worker(name)
        device = env.get("LANDMARKS_RECOGNITION__DEVICE", "cpu")
        assert prefetch(command) == needed(device), name
        assert concurrency(command) == 1 or device == "cpu"


def exec_start(unit: str) -> list[str]:
    [line] = [ln for ln in (DEPLOY / "systemd" / unit).read_text().splitlines() if ln.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def test_systemd_recognize_workers() -> None:
    gpu = (DEPLOY / "systemd" / "landmarks-recognize-gpu@.service").read_text().splitlines()
    assert "Environment=LANDMARKS_RECOGNITION__DEVICE=cuda" in gpu
    assert prefetch(exec_start("landmarks-recognize-gpu@.service")) == needed("cuda")
    # The generic unit runs CPU queues, recognize included (landmarks-worker@recognize).
    assert prefetch(exec_start("landmarks-worker@.service")) == needed("cpu")
