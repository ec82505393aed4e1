"""Server-side sessions of the album browser: what a sign-in cookie stands for, until it expires.

The cookie carries a random session id, never the client's long-lived token: a stolen cookie is worth one
session, ends at sign-out or expiry, and is refused by /v1 (which takes bearer tokens only). Each session has a
CSRF token that every form posted under it must carry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select  # statement_timestamp(): now() would be the transaction's start
from sqlalchemy.orm import Session

from shared.db.models import UiSession
from workers.api.auth import Principal, TokenTable

DEFAULT_TTL = timedelta(hours=12)


@dataclass(frozen=True)
class SignedIn:
    """A live session: who it signs in as and the CSRF token its forms carry."""

    principal: Principal
    csrf: str


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def start(session: Session, tokens: TokenTable, token: str, *, ttl: timedelta = DEFAULT_TTL) -> str | None:
    """A new session for the client whose token this is; the cookie value, or None for a wrong token.

    Expired sessions are purged on the way, so the table holds live sessions (and a few just expired) only.
    """
    principal = tokens.authenticate(token)
    if principal is None:
        return None
    session.execute(delete(UiSession).where(UiSession.expires_at < func.statement_timestamp()))
    cookie = secrets.token_urlsafe(32)
    session.add(
        UiSession(
            id_hash=_hash(cookie),
            client=principal.client,
            token_hash=_hash(token),
            csrf_token=secrets.token_urlsafe(32),
            expires_at=func.statement_timestamp() + ttl,
        )
    )
    session.flush()
    return cookie


def resume(session: Session, tokens: TokenTable, cookie: str | None) -> SignedIn | None:
    """The live session of this cookie, or None (unknown, expired, or its client's token changed since)."""
    if not cookie:
        return None
    row = session.execute(
        select(UiSession).where(UiSession.id_hash == _hash(cookie), UiSession.expires_at > func.statement_timestamp())
    ).scalar_one_or_none()
    if row is None:
        return None
    principal = tokens.by_client(row.client)
    if principal is None or not hmac.compare_digest(row.token_hash, tokens.token_hash(row.client) or ""):
        return None
    return SignedIn(principal, row.csrf_token)


def end(session: Session, cookie: str | None) -> None:
    """Sign out: the session is gone on the server, whatever the browser keeps."""
    if cookie:
        session.execute(delete(UiSession).where(UiSession.id_hash == _hash(cookie)))


def csrf_matches(signed_in: SignedIn, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(signed_in.csrf.encode(), (submitted or "").encode())
