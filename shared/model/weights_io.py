"""Weights file I/O: the torch-dependent parts of a model bundle (head, tuned backbone), inside ``shared.model``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def save_state(state: dict[str, Any], path: Path) -> None:
    """A state dict as a torch file of plain tensors (loadable with ``weights_only=True``: no pickled code)."""
    torch.save({k: torch.as_tensor(v).detach().cpu().contiguous() for k, v in state.items()}, path)


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


save_head_state = save_state
load_head_state = load_state
