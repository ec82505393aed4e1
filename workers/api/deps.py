"""Request dependencies: a database session per request, the authenticated client, the photos it may see."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from shared.db.models import Photo
from shared.db.session import session_scope
from workers.api import queries
from workers.api import sessions as ui_sessions
from workers.api.auth import Principal
from workers.api.sessions import SignedIn

COOKIE = "landmarks_session"  # a server-side session id (workers.api.sessions), never a client token
PRESIGN_TTL = timedelta(hours=1)

bearer = HTTPBearer(auto_error=False, description="A client token from LANDMARKS_API_TOKENS.")


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back when it raises."""
    with session_scope(request.app.state.sessions) as session:
        yield session


def token_of(request: Request) -> str | None:
    """``Authorization: Bearer <token>``; the browser's cookie is no token (it is accepted on /ui only)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def get_principal(
    request: Request, _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The client, or 401. (The security dependency only describes the scheme in the OpenAPI spec.)"""
    principal = request.app.state.tokens.authenticate(token_of(request))
    if principal is None:
        raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})
    return principal


def get_signed_in(request: Request, session: Annotated[Session, Depends(get_session, scope="function")]) -> SignedIn:
    """The browser's live session (/ui), or 401 (the sign-in form)."""
    signed_in = ui_sessions.resume(session, request.app.state.tokens, request.cookies.get(COOKIE))
    if signed_in is None:
        raise HTTPException(401, "not signed in")
    request.state.csrf = signed_in.csrf  # for the pages' forms
    return signed_in


# scope="function": commit before the response is sent, so a client that reads right after a write sees it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
SignedInDep = Annotated[SignedIn, Depends(get_signed_in)]


def check_user(principal: Principal, user: str) -> None:
    if not principal.may_serve(user):
        raise HTTPException(403, f"this token may not read user {user!r}")


def visible_photo(session: Session, principal: Principal, photo_id: uuid.UUID) -> tuple[Photo, str]:
    """The photo and its owner; 404 alike for a missing photo and another user's (existence is not told)."""
    found = queries.photo_owner(session, photo_id)
    if found is None or not principal.may_serve(found[1]):
        raise HTTPException(404, f"no photo {photo_id}")
    photo, owner = found
    assert owner is not None  # may_serve is False for ownerless photos
    return photo, owner


def get_operator(principal: PrincipalDep) -> Principal:
    """An operator token (``"operator": true`` in LANDMARKS_API_TOKENS), or 403: a user's token sees no jobs."""
    if not principal.operator:
        raise HTTPException(403, "this token is not an operator's")
    return principal


OperatorDep = Annotated[Principal, Depends(get_operator)]


def check_writer(principal: Principal) -> None:
    if principal.read_only:
        raise HTTPException(403, "this token is read-only")


def object_url(request: Request, bucket: str, key: str) -> str:
    """A presigned GET of the original object (valid an hour) at the storage's public address: signed locally,
    no call to S3."""
    return request.app.state.presigner.presigned_get_object(bucket, key, expires=PRESIGN_TTL)


def photo_url(request: Request, photo: Photo) -> str:
    return object_url(request, photo.bucket, photo.key)


def thumbnail_url(request: Request, photo_id: uuid.UUID, size: int = 256) -> str:
    return f"{request.url_for('photo_thumbnail', photo_id=str(photo_id))}?size={size}"
