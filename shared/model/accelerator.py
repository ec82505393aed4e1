"""Whether the recognize device is a GPU, asked without initialising CUDA, and the micro-batch that follows.

A Celery worker's main process decides at start whether its recognize pool runs photos one by one or in
micro-batches; it forks its pool processes after that, and a process that initialised CUDA cannot hand CUDA to a
forked child. So ``auto`` is answered by NVML (PyTorch's ``PYTORCH_NVML_BASED_CUDA_CHECK``), which counts GPUs
without creating a CUDA context; the device itself is still resolved by :func:`shared.model.resolve_device`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shared.settings import RecognitionSettings

# Photos per recognizer call on a GPU when `recognition.micro_batch` is left to auto. Measured on one H200 with
# 16 cores (bench/README.md, bench_recognize.py on 12 MP JPEGs, 16 decode threads): 233 photos/s at 64 against
# 172 at 16, as a call's fixed costs are shared by more photos; 3.2 GiB of GPU memory per process at 64. At low
# load a batch leaves after `micro_batch_wait_ms` whatever its size, so the larger batch costs no latency.
AUTO_GPU_MICRO_BATCH = 64
# Threads fetching and decoding a micro-batch on a GPU worker when `recognition.decode_threads` is left to auto
# (capped by the cores): decoding is what limits a GPU worker; 16 threads gave 233 photos/s against 167 with 8.
AUTO_GPU_DECODE_THREADS = 16
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
# Device nodes of an NVIDIA driver (native, containers with the NVIDIA runtime, WSL 2). Without any of them no
# CUDA device can exist, and a CPU worker is spared importing torch in its main process.
NVIDIA_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def is_cuda_device(device: str) -> bool:
    """Whether ``recognition.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``...) means a CUDA GPU here.

    Safe in a process that forks afterwards: it never creates a CUDA context.
    """
    name = device.strip().lower()
    if name != "auto":
        return name.startswith("cuda")
    if sys.platform.startswith("linux") and not any(Path(node).exists() for node in NVIDIA_NODES):
        return False
    previous = os.environ.get(NVML_CHECK)
    os.environ[NVML_CHECK] = "1"
    try:
        from shared.model import resolve_device

        return resolve_device("auto").type == "cuda"
    finally:
        if previous is None:
            os.environ.pop(NVML_CHECK, None)
        else:
            os.environ[NVML_CHECK] = previous


def micro_batch_size(recognition: RecognitionSettings) -> int:
    """Photos per recognizer call on a recognize worker: the setting, or auto (a GPU batches, a CPU does not)."""
    if recognition.micro_batch is not None:
        return recognition.micro_batch
    return AUTO_GPU_MICRO_BATCH if is_cuda_device(recognition.device) else 1


def micro_batch_prefetch(recognition: RecognitionSettings) -> int | None:
    """The ``--prefetch-multiplier`` (messages per pool process) a recognize worker needs to fill its micro-batches,
    two batches per process: one being recognised while the next one gathers (acks late keeps a running batch's
    messages in the window). None when it does not batch: keep the fleet's default of 1."""
    size = micro_batch_size(recognition)
    return 2 * size if size > 1 else None


def decode_threads(recognition: RecognitionSettings) -> int:
    """Threads that fetch, decode and resize a recognize worker's photos: the setting, or auto (a GPU worker
    decodes on several cores, up to the machine's; a CPU worker's process decodes on its own thread)."""
    if recognition.decode_threads is not None:
        return recognition.decode_threads
    if not is_cuda_device(recognition.device):
        return 1
    return max(1, min(AUTO_GPU_DECODE_THREADS, os.cpu_count() or 1))
