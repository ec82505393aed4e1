"""``/ui``: a small server-rendered album browser (Jinja2) over the same queries and services as ``/v1``.

``/ui/`` is the front door: the users the token may read, each with album and photo counts. Sign-in: the form at
``/ui/login`` takes a client token and lands on ``/ui/`` (or the page that asked for it), or any page URL carries
``?token=...`` once (what ``landmarks demo run`` prints); either starts a server-side session
(``workers.api.sessions``) whose random id goes into an HttpOnly, SameSite=Lax cookie, and the token leaves the
address bar. The cookie is accepted here only, never by /v1. Forms post without JavaScript and carry the session's
CSRF token (SameSite alone leaves same-site origins and older browsers).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from shared.db.session import session_scope
from shared.photos import corrections
from shared.scenes.store import UnknownUserError, list_scene_albums
from workers.api import queries, routes_v1
from workers.api import sessions as ui_sessions
from workers.api.auth import ALL_USERS
from workers.api.deps import COOKIE, SessionDep, SignedInDep, check_user, check_writer, visible_photo
from workers.api.sessions import SignedIn
from workers.api.thumbs import SIZES

PREFIX = "/ui"
HOME = PREFIX + "/"
LOGIN_CSRF_COOKIE = "landmarks_login_csrf"
PAGE_SIZE = 48
SCENE_PAGE_LIMIT = 200  # photos shown on a scene album's page (best scores first)

router = APIRouter(prefix=PREFIX, include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _set_cookie(response: Response, request: Request, cookie: str) -> None:
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(request.app.state.session_ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )


def _start(session: Session, request: Request, token: str) -> str | None:
    return ui_sessions.start(session, request.app.state.tokens, token, ttl=request.app.state.session_ttl)


def _check_csrf(signed_in: SignedIn, submitted: str | None) -> None:
    if not ui_sessions.csrf_matches(signed_in, submitted):
        raise HTTPException(403, "this form is stale or was not sent by this site: reload the page and try again")


def _safe_next(target: str | None) -> str:
    """Only our own pages: never an absolute or protocol-relative URL (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME


async def sign_in_from_query(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """``/ui/...?token=T``: a valid T becomes the cookie and the page reloads without it; a wrong one, the form."""
    if not request.url.path.startswith(PREFIX + "/") or "token" not in request.query_params:
        return await call_next(request)
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
    with session_scope(request.app.state.sessions) as session:
        cookie = _start(session, request, request.query_params["token"])
    if cookie is None:
        return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target, 'failed': 1})}", status_code=303)
    response = RedirectResponse(target, status_code=303)
    _set_cookie(response, request, cookie)
    return response


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "detail": detail, "principal": None}, status_code=status
    )


def _login_page(request: Request, next: str | None, *, failed: bool, status: int) -> HTMLResponse:
    """The sign-in form with a fresh form token, also set as a cookie: a post must carry both (double submit), so
    a page elsewhere cannot sign this browser in as a client of its choosing."""
    csrf = secrets.token_urlsafe(32)
    context = {"next": _safe_next(next), "failed": failed, "principal": None, "csrf": csrf}
    response = templates.TemplateResponse(request, "login.html", context, status_code=status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, csrf, max_age=3600, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path=PREFIX,
    )  # fmt: skip
    return response


@router.get("/login", name="ui_login")
def login_form(request: Request, next: str | None = None, failed: bool = False) -> HTMLResponse:
    return _login_page(request, next, failed=failed, status=401 if failed else 200)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not csrf or not hmac.compare_digest(csrf.encode(), expected.encode()):
        raise HTTPException(403, "this sign-in form is stale or was not sent by this site: reload it and try again")
    cookie = _start(session, request, token)
    if cookie is None:
        return _login_page(request, next, failed=True, status=401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_cookie(response, request, cookie)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout", name="ui_logout")
def logout(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session on the server; a post without the session's CSRF token ends nothing."""
    cookie = request.cookies.get(COOKIE)
    signed_in = ui_sessions.resume(session, request.app.state.tokens, cookie)
    if signed_in is not None:
        _check_csrf(signed_in, csrf)
        ui_sessions.end(session, cookie)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/", name="ui_home")
def home_page(request: Request, session: SessionDep, signed_in: SignedInDep) -> HTMLResponse:
    """The users this token may read (every user the database knows, for a ``"*"`` token)."""
    principal = signed_in.principal
    names = None if ALL_USERS in principal.users else principal.users
    users = queries.user_summaries(session, names)
    return templates.TemplateResponse(request, "home.html", {"users": users, "user": None, "principal": principal})


@router.get("/users/{user}", name="ui_albums")
def albums_page(user: str, request: Request, session: SessionDep, signed_in: SignedInDep) -> HTMLResponse:
    principal = signed_in.principal
    check_user(principal, user)
    groups = queries.albums_by_city(session, user)
    return templates.TemplateResponse(request, "albums.html", {"user": user, "groups": groups, "principal": principal})


@router.get("/users/{user}/albums/{landmark}", name="ui_album")
def album_page(
    user: str,
    landmark: str,
    request: Request,
    session: SessionDep,
    signed_in: SignedInDep,
    cursor: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    principal = signed_in.principal
    check_user(principal, user)
    try:
        page = queries.album_page(session, user, landmark, limit=PAGE_SIZE, cursor=cursor)
    except queries.InvalidCursor as exc:
        raise HTTPException(400, str(exc)) from exc
    if page is None:
        raise HTTPException(404, f"{user} has no album for {landmark}")
    return templates.TemplateResponse(request, "album.html", {"user": user, "page": page, "principal": principal})


def _scene_albums(session: SessionDep, user: str) -> list:
    try:
        return list_scene_albums(session, user)
    except UnknownUserError:
        return []  # a user the token may read who has uploaded nothing yet


@router.get("/users/{user}/scenes", name="ui_scenes")
def scenes_page(user: str, request: Request, session: SessionDep, signed_in: SignedInDep) -> HTMLResponse:
    """Scene albums (architecture, food, ...): the tags of each photo's current model version."""
    principal = signed_in.principal
    check_user(principal, user)
    context = {"user": user, "scenes": _scene_albums(session, user), "principal": principal}
    return templates.TemplateResponse(request, "scenes.html", context)


@router.get("/users/{user}/scenes/{label}", name="ui_scene")
def scene_page(user: str, label: str, request: Request, session: SessionDep, signed_in: SignedInDep) -> HTMLResponse:
    principal = signed_in.principal
    check_user(principal, user)
    album = next((a for a in _scene_albums(session, user) if a.label == label), None)
    if album is None:
        raise HTTPException(404, f"{user} has no scene album {label!r}")
    context = {"user": user, "album": album, "limit": SCENE_PAGE_LIMIT, "principal": principal}
    return templates.TemplateResponse(request, "scene.html", context)


@router.get("/photos/{photo_id}", name="ui_photo")
def photo_page(photo_id: uuid.UUID, request: Request, session: SessionDep, signed_in: SignedInDep) -> HTMLResponse:
    principal = signed_in.principal
    photo, owner = visible_photo(session, principal, photo_id)
    detail = queries.photo_detail(session, photo, owner)
    return templates.TemplateResponse(request, "photo.html", {"user": owner, "detail": detail, "principal": principal})


@router.get("/photos/{photo_id}/thumb", name="ui_photo_thumbnail")
def photo_thumbnail(
    photo_id: uuid.UUID, request: Request, size: Annotated[int, Query(ge=1, le=SIZES[-1])] = 256
) -> Response:
    """The pages' thumbnails, under the browser's session (the /v1 one takes bearer tokens only)."""
    with session_scope(request.app.state.sessions) as session:  # closed before the S3 read and the resize
        signed_in = ui_sessions.resume(session, request.app.state.tokens, request.cookies.get(COOKIE))
    if signed_in is None:
        raise HTTPException(401, "not signed in")
    return routes_v1.thumbnail_response(request, signed_in.principal, photo_id, size)


@router.post("/photos/{photo_id}/reject", name="ui_reject")
def reject(
    photo_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    signed_in: SignedInDep,
    landmark: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Reject from the photo page, then back to the album (or the albums, when it was the album's last photo)."""
    _check_csrf(signed_in, csrf)
    principal = signed_in.principal
    check_writer(principal)
    _, owner = visible_photo(session, principal, photo_id)
    try:
        corrections.reject(session, photo_id, landmark=landmark, client=principal.client)
    except corrections.CorrectionError as exc:
        raise HTTPException(409 if isinstance(exc, corrections.NotInAlbum) else 404, str(exc)) from exc
    session.flush()
    if queries.album_page(session, owner, landmark, limit=1) is not None:
        target = request.url_for("ui_album", user=owner, landmark=landmark)
    else:
        target = request.url_for("ui_albums", user=owner)
    return RedirectResponse(target.path, status_code=303)
