"""Host and port from the service URLs in the settings, so every service is probed where clients will connect."""

from __future__ import annotations

from urllib.parse import urlsplit

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """Host and port of a URL such as ``redis://127.0.0.1:6379/0`` or ``postgresql+psycopg2://u@h:5432/db``."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in URL {url!r}")
    return parts.hostname, parts.port or default_port


def endpoint_host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    """Host and port of a scheme-less endpoint such as ``127.0.0.1:8333`` (the S3 client's form)."""
    return host_port(endpoint if "://" in endpoint else f"tcp://{endpoint}", default_port)


def is_local(host: str) -> bool:
    """Whether `dev up` may start a server for this host (it only ever starts servers on loopback)."""
    return host in LOCAL_HOSTS
