"""``/ui``: a small server-rendered album browser (Jinja2) over the same queries and services as ``/v1``.

``/ui/`` is the front door: the users the token may read, each with album and photo counts. Sign-in: the form at
``/ui/login`` takes a client token and lands on ``/ui/`` (or the page that asked for it), or any page URL carries
``?token=...`` once (what ``landmarks demo run`` prints); either sets an HttpOnly, SameSite=Lax cookie and the
token leaves the address bar.
Forms post without JavaScript; SameSite keeps other sites from posting them with the cookie.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from shared import corrections
from shared.scenes.store import UnknownUserError, list_scene_albums
from workers.api import queries
from workers.api.auth import ALL_USERS
from workers.api.deps import COOKIE, PrincipalDep, SessionDep, check_user, check_writer, visible_photo

PREFIX = "/ui"
HOME = PREFIX + "/"
PAGE_SIZE = 48
SCENE_PAGE_LIMIT = 200  # photos shown on a scene album's page (best scores first)
COOKIE_MAX_AGE_S = 7 * 24 * 3600

router = APIRouter(prefix=PREFIX, include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _set_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


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
    token = request.query_params["token"]
    if request.app.state.tokens.authenticate(token) is None:
        return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target, 'failed': 1})}", status_code=303)
    response = RedirectResponse(target, status_code=303)
    _set_cookie(response, request, token)
    return response


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "detail": detail, "principal": None}, status_code=status
    )


@router.get("/login", name="ui_login")
def login_form(request: Request, next: str | None = None, failed: bool = False) -> HTMLResponse:
    status = 401 if failed else 200
    context = {"next": _safe_next(next), "failed": failed, "principal": None}
    return templates.TemplateResponse(request, "login.html", context, status_code=status)


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "") -> Response:
    if request.app.state.tokens.authenticate(token) is None:
        context = {"next": _safe_next(next), "failed": True, "principal": None}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_cookie(response, request, token)
    return response


@router.post("/logout", name="ui_logout")
def logout() -> Response:
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/", name="ui_home")
def home_page(request: Request, session: SessionDep, principal: PrincipalDep) -> HTMLResponse:
    """The users this token may read (every user the database knows, for a ``"*"`` token)."""
    names = None if ALL_USERS in principal.users else principal.users
    users = queries.user_summaries(session, names)
    return templates.TemplateResponse(request, "home.html", {"users": users, "user": None, "principal": principal})


@router.get("/users/{user}", name="ui_albums")
def albums_page(user: str, request: Request, session: SessionDep, principal: PrincipalDep) -> HTMLResponse:
    check_user(principal, user)
    groups = queries.albums_by_city(session, user)
    return templates.TemplateResponse(request, "albums.html", {"user": user, "groups": groups, "principal": principal})


@router.get("/users/{user}/albums/{landmark}", name="ui_album")
def album_page(
    user: str,
    landmark: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    cursor: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
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
def scenes_page(user: str, request: Request, session: SessionDep, principal: PrincipalDep) -> HTMLResponse:
    """Scene albums (architecture, food, ...): the tags of each photo's current model version."""
    check_user(principal, user)
    context = {"user": user, "scenes": _scene_albums(session, user), "principal": principal}
    return templates.TemplateResponse(request, "scenes.html", context)


@router.get("/users/{user}/scenes/{label}", name="ui_scene")
def scene_page(user: str, label: str, request: Request, session: SessionDep, principal: PrincipalDep) -> HTMLResponse:
    check_user(principal, user)
    album = next((a for a in _scene_albums(session, user) if a.label == label), None)
    if album is None:
        raise HTTPException(404, f"{user} has no scene album {label!r}")
    context = {"user": user, "album": album, "limit": SCENE_PAGE_LIMIT, "principal": principal}
    return templates.TemplateResponse(request, "scene.html", context)


@router.get("/photos/{photo_id}", name="ui_photo")
def photo_page(photo_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep) -> HTMLResponse:
    photo, owner = visible_photo(session, principal, photo_id)
    detail = queries.photo_detail(session, photo, owner)
    return templates.TemplateResponse(request, "photo.html", {"user": owner, "detail": detail, "principal": principal})


@router.post("/photos/{photo_id}/reject", name="ui_reject")
def reject(
    photo_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    landmark: Annotated[str, Form()],
) -> Response:
    """Reject from the photo page, then back to the album (or the albums, when it was the album's last photo)."""
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
