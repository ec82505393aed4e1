"""Micro-batching is on by default only where the recognize device is CUDA, and a batching worker's prefetch allows
its batches; CPU workers keep their command line as it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devtools.stack.apps import worker
from shared.model import accelerator
from shared.model.accelerator import (
    AUTO_GPU_DECODE_THREADS,
    AUTO_GPU_MICRO_BATCH,
    decode_threads,
    is_cuda_device,
    micro_batch_prefetch,
    micro_batch_size,
)
from shared.settings import RecognitionSettings, Settings


@pytest.mark.parametrize(
    ("device", "cuda"), [("cpu", False), ("CPU", False), ("cuda", True), ("cuda:1", True), ("mps", False)]
)
def test_an_explicit_device_is_answered_from_its_name(device: str, cuda: bool) -> None:
    assert is_cuda_device(device) is cuda


def test_auto_without_an_nvidia_driver_is_not_cuda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(accelerator, "NVIDIA_NODES", (str(tmp_path / "nvidiactl"),))
    monkeypatch.setattr(accelerator.sys, "platform", "linux")

    assert is_cuda_device("auto") is False


def test_auto_leaves_the_nvml_switch_as_it_found_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a driver node present torch is asked (through NVML); the environment is restored afterwards."""
    node = tmp_path / "nvidiactl"
    node.touch()
    monkeypatch.setattr(accelerator, "NVIDIA_NODES", (str(node),))
    monkeypatch.delenv(accelerator.NVML_CHECK, raising=False)

    answer = is_cuda_device("auto")

    from shared.model import resolve_device

    assert answer is (resolve_device("auto").type == "cuda")
    assert accelerator.NVML_CHECK not in os.environ


def test_the_setting_wins_and_auto_follows_the_device() -> None:
    assert micro_batch_size(RecognitionSettings(micro_batch=8, device="cpu")) == 8
    assert micro_batch_size(RecognitionSettings(micro_batch=1, device="cuda")) == 1
    assert micro_batch_size(RecognitionSettings(device="cuda")) == AUTO_GPU_MICRO_BATCH
    assert micro_batch_size(RecognitionSettings(device="cpu")) == 1
    with pytest.raises(ValueError):
        RecognitionSettings(micro_batch=0)


def test_decode_threads_follow_the_setting_or_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert decode_threads(RecognitionSettings(decode_threads=3, device="cpu")) == 3
    assert decode_threads(RecognitionSettings(device="cpu")) == 1  # each CPU pool process decodes on its own
    monkeypatch.setattr(accelerator.os, "cpu_count", lambda: 64)
    assert decode_threads(RecognitionSettings(device="cuda")) == AUTO_GPU_DECODE_THREADS
    monkeypatch.setattr(accelerator.os, "cpu_count", lambda: 4)
    assert decode_threads(RecognitionSettings(device="cuda")) == 4  # never more threads than cores
    with pytest.raises(ValueError):
        RecognitionSettings(decode_threads=0)
    with pytest.raises(ValueError):
        RecognitionSettings(precision="int8")


def test_prefetch_holds_two_batches_per_process_and_only_when_batching() -> None:
    assert micro_batch_prefetch(RecognitionSettings(micro_batch=8)) == 16
    assert micro_batch_prefetch(RecognitionSettings(device="cuda")) == 2 * AUTO_GPU_MICRO_BATCH
    assert micro_batch_prefetch(RecognitionSettings(device="cpu")) is None


def test_the_dev_recognize_worker_prefetches_batches_only_when_it_batches(tmp_path: Path) -> None:
    cpu = Settings(state_dir=tmp_path, recognition=RecognitionSettings(device="cpu"))
    gpu = Settings(state_dir=tmp_path, recognition=RecognitionSettings(device="cuda:0"))

    assert "--prefetch-multiplier" not in worker(cpu, tmp_path, "recognize", 2).argv
    argv = worker(gpu, tmp_path, "recognize", 1).argv
    assert argv[argv.index("--prefetch-multiplier") + 1] == str(2 * AUTO_GPU_MICRO_BATCH)
    assert "--prefetch-multiplier" not in worker(gpu, tmp_path, "ingest", 2).argv
