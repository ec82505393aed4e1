"""Service tokens: each API client has a secret bearer token and the users it may serve (``"*"``: all).

Tokens are compared in constant time against every client (no early exit), after hashing to one length, so
neither the time taken nor a token's length tells a caller how close it came or which client it matched.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import ApiClient

ALL_USERS = "*"


@dataclass(frozen=True)
class Principal:
    """The authenticated client of one request."""

    client: str
    users: frozenset[str]
    read_only: bool = False
    operator: bool = False  # may read /v1/ops (reprocess jobs), whatever users it serves

    def may_serve(self, user: str | None) -> bool:
        return user is not None and (ALL_USERS in self.users or user in self.users)


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    """The configured clients, ready for :meth:`authenticate`."""

    def __init__(self, clients: Mapping[str, ApiClient]) -> None:
        entries = []
        for name, client in clients.items():
            token = client.token.get_secret_value()
            if not token:
                raise ValueError(f"API client {name!r} has an empty token")
            principal = Principal(name, frozenset(client.users), client.read_only, client.operator)
            entries.append(_Entry(_digest(token), principal))
        self._entries = tuple(entries)
        self._by_client = {entry.principal.client: entry for entry in entries}

    def authenticate(self, token: str | None) -> Principal | None:
        """The client whose token this is, or None; every client's token is compared, whatever matched."""
        if not token:
            return None
        candidate = _digest(token)
        found = None
        for entry in self._entries:
            if hmac.compare_digest(candidate, entry.digest) and found is None:
                found = entry.principal
        return found

    def by_client(self, name: str) -> Principal | None:
        """The configured client of this name (a browser session names its client)."""
        entry = self._by_client.get(name)
        return entry.principal if entry else None

    def token_hash(self, name: str) -> str | None:
        """The SHA-256 (hex) of the client's current token: a session started with an older token is void."""
        entry = self._by_client.get(name)
        return entry.digest.hex() if entry else None
