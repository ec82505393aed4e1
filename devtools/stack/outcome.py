"""What happened to one service: the rows of `dev up|down|status` (a table, or JSON with ``--json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

State = Literal[
    "started",  # up: we started it and it is ready
    "already running",  # up: ours, started earlier
    "reused",  # a server we did not start answers at the configured address
    "running",  # status: ours and alive
    "stopped",  # down: we stopped it / status: not running
    "failed",  # could not start, stop or be reached; `detail` says why
    "skipped",  # not attempted because something it needs failed
]

FAILED: frozenset[str] = frozenset({"failed"})


@dataclass(frozen=True)
class Outcome:
    name: str
    state: State
    pid: int | None = None
    address: str = ""
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.state in FAILED

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
