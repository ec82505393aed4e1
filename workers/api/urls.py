"""Addresses of the album browser, for commands that print where to look (``landmarks demo run``)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlencode

from shared.settings import ApiClient, Settings
from workers.api.auth import ALL_USERS

UI_PREFIX = "/ui"


def base_url(settings: Settings) -> str:
    """The API's own address; a wildcard listen address is reached through the loopback."""
    host = settings.api_host if settings.api_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


def token_for(user: str, clients: Mapping[str, ApiClient]) -> str | None:
    """A token allowed to serve ``user``: a client named for the user first, then one allowed every user."""
    ranked = sorted(clients.values(), key=lambda c: (user not in c.users, c.read_only))
    for client in ranked:
        if user in client.users or ALL_USERS in client.users:
            return client.token.get_secret_value()
    return None


def album_page_url(settings: Settings, user: str) -> str:
    """The page of ``user``'s albums, with a token that signs the browser in (it is then kept in a cookie).

    Without a client allowed for the user the URL leads to the sign-in form instead.
    """
    url = f"{base_url(settings)}{UI_PREFIX}/users/{quote(user, safe='')}"
    token = token_for(user, settings.api_tokens)
    return f"{url}?{urlencode({'token': token})}" if token else url
