"""Readiness probes: how `dev up` knows a process it started is serving, not merely alive.

Each probe is a small value object so the app table (:mod:`devtools.stack.apps`) can declare it per entry.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Probe(Protocol):
    description: str

    def probe(self, elapsed: float) -> bool:
        """One attempt; `elapsed` is seconds since the process started. True means ready."""
        ...


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class PortOpen:
    host: str
    port: int

    @property
    def description(self) -> str:
        return f"port {self.host}:{self.port} accepts connections"

    def probe(self, elapsed: float) -> bool:
        return port_open(self.host, self.port)


@dataclass(frozen=True)
class StaysAlive:
    """For processes that serve nothing we can ask (beat, the bridge): ready once alive this long."""

    seconds: float = 2.0

    @property
    def description(self) -> str:
        return f"stays alive for {self.seconds:g} s"

    def probe(self, elapsed: float) -> bool:
        return elapsed >= self.seconds


@dataclass(frozen=True)
class CeleryPing:
    """A worker is ready when it answers a broadcast ping through the broker (its consumer is running)."""

    broker_url: str
    node: str  # e.g. "recognize@myhost"

    @property
    def description(self) -> str:
        return f"worker {self.node} answers ping"

    def probe(self, elapsed: float) -> bool:
        from celery import Celery  # only the CLI's `dev up` needs Celery, and only when workers start

        with Celery("devstack-ping", broker=self.broker_url) as app:
            try:
                replies = app.control.ping(destination=[self.node], timeout=1.0)
            except Exception:  # broker not reachable yet: not ready
                return False
        return any(self.node in reply for reply in replies)


@dataclass(frozen=True)
class Answers:
    """Ready when a service-specific client call succeeds (Redis PING, S3 ListBuckets, a SQL connection)."""

    description: str
    check: Callable[[], bool]

    def probe(self, elapsed: float) -> bool:
        return self.check()
