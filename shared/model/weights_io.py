"""Head weights file I/O: the one torch-dependent part of a model bundle, kept inside ``shared.model``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def save_head_state(state: dict[str, Any], path: Path) -> None:
    torch.save({k: torch.as_tensor(v) for k, v in state.items()}, path)


def load_head_state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)
