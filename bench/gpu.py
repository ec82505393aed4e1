"""What the benches record about the accelerator they ran on: device, versions and GPU memory per process.

``torch.cuda`` counts only what PyTorch's allocator holds; the CUDA context, cuDNN's workspaces and libraries
count too, so the process's own total comes from ``nvidia-smi`` (what a container's GPU limit sees).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any

import torch


def device_info(device: torch.device) -> dict[str, Any]:
    """The machine, PyTorch, CUDA and cuDNN versions, and the GPU's name and memory when there is one."""
    info: dict[str, Any] = {
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            driver=_smi("--query-gpu=driver_version"),
        )
    return info


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def memory_mib(device: torch.device) -> dict[str, float | None]:
    """Peak memory PyTorch allocated and reserved since :func:`reset_peak`, and the whole process's use of the
    GPU (context included) by ``nvidia-smi``; empty on a CPU."""
    if device.type != "cuda":
        return {}
    torch.cuda.synchronize(device)
    return {
        "peak_allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
        "peak_reserved_mib": round(torch.cuda.max_memory_reserved(device) / 2**20, 1),
        "process_mib": process_gpu_mib(),
    }


def process_gpu_mib(pid: int | None = None) -> float | None:
    """GPU memory this process holds by ``nvidia-smi`` (None where it cannot tell, e.g. inside some sandboxes)."""
    pid = pid or os.getpid()
    out = _smi("--query-compute-apps=pid,used_memory")
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            try:
                return float(parts[1].split()[0])
            except ValueError:
                return None
    return None


def _smi(query: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None
