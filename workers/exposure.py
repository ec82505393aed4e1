"""Refusing to expose a default secret: a network-facing service (the bridge's webhook, the API, Flower) starts
with a default or empty secret only when it listens on loopback, where only this machine can reach it.

The shipped defaults (``change-me-*``, Flower's ``landmarks``) are public: anyone reading this repository could
forge events, read every user's albums or drive the workers through Flower.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping

PLACEHOLDER_PREFIX = "change-me"  # every example and default secret the project ships starts with it
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class WeakSecret(RuntimeError):
    """A default or empty secret on an address other machines can reach."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address or name) is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # "", "0.0.0.0"-like wildcards are addresses; any other name may resolve anywhere


def is_weak(secret: str | None, defaults: Collection[str] = ()) -> bool:
    value = (secret or "").strip()
    return not value or value.lower().startswith(PLACEHOLDER_PREFIX) or value in defaults


def refuse_weak_secrets(
    service: str, host: str, secrets: Mapping[str, str | None], *, defaults: Collection[str] = ()
) -> None:
    """Raise :class:`WeakSecret` naming every weak one of ``secrets`` (what -> value) unless ``host`` is loopback."""
    if is_loopback(host):
        return
    weak = [what for what, value in secrets.items() if is_weak(value, defaults)]
    if weak:
        raise WeakSecret(
            f"refusing to start the {service} on {host or 'every address'} with a default or empty "
            f"{', '.join(weak)}: set a secret of your own, or listen on 127.0.0.1"
        )
