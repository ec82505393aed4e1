"""The album browser's sign-in: a server-side session that expires, its cookie accepted on /ui only, and a CSRF
token on every form a signed-in browser posts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from shared.db.models import UiSession
from tests.integration import test_api
from tests.integration.test_api import World
from workers.api.deps import COOKIE

pytestmark = pytest.mark.integration

client = test_api.client  # the API tests' app and world, as fixtures of this module too
world = test_api.world


def _sign_in(client: TestClient, token: str = "token-alice") -> str:
    form = {"token": token, "next": "/ui/users/api-alice", "csrf": _csrf(client.get("/ui/login").text)}
    answer = client.post("/ui/login", data=form, follow_redirects=False)
    assert answer.status_code == 303
    return client.cookies[COOKIE]


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def test_the_cookie_holds_a_session_that_expires_not_the_client_token(client: TestClient, world: World) -> None:
    cookie = _sign_in(client)
    assert "token-alice" not in cookie and len(cookie) >= 32
    [row] = world.session.execute(select(UiSession)).scalars().all()
    assert row.client == "alice-app" and cookie not in (row.id_hash, row.csrf_token)  # only its hash is stored
    assert datetime.now(UTC) < row.expires_at <= datetime.now(UTC) + timedelta(days=1)
    assert client.get("/ui/users/api-alice").status_code == 200
    world.session.execute(update(UiSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    world.session.flush()
    expired = client.get("/ui/users/api-alice", follow_redirects=False)
    assert expired.status_code == 303 and expired.headers["location"].startswith("/ui/login")


def test_the_browser_cookie_is_not_accepted_by_the_json_api(client: TestClient, world: World) -> None:
    _sign_in(client)
    assert client.get("/ui/users/api-alice").status_code == 200
    assert client.get("/v1/users/api-alice/albums").status_code == 401
    client.cookies.set(COOKIE, "token-alice")  # the raw token in the cookie, as before: no longer a sign-in
    assert client.get("/v1/users/api-alice/albums").status_code == 401
    assert client.get("/ui/users/api-alice", follow_redirects=False).status_code == 303


def test_forms_need_the_sessions_csrf_token(client: TestClient, world: World) -> None:
    _sign_in(client)
    photo = world.alice[5]  # the Trevi Fountain's only photo
    page = client.get(f"/ui/photos/{photo}")
    token = _csrf(page.text)
    reject = f"/ui/photos/{photo}/reject"
    assert client.post(reject, data={"landmark": "api-trevi"}, follow_redirects=False).status_code == 403
    forged = client.post(reject, data={"landmark": "api-trevi", "csrf": "x" * 43}, follow_redirects=False)
    assert forged.status_code == 403
    done = client.post(reject, data={"landmark": "api-trevi", "csrf": token}, follow_redirects=False)
    assert done.status_code == 303


def test_signing_out_ends_the_session_on_the_server(client: TestClient, world: World) -> None:
    cookie = _sign_in(client)
    token = _csrf(client.get("/ui/users/api-alice").text)
    assert client.post("/ui/logout", data={"csrf": "nope"}, follow_redirects=False).status_code == 403
    assert client.post("/ui/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert world.session.execute(select(UiSession)).first() is None
    client.cookies.set(COOKIE, cookie)  # replayed after sign-out
    assert client.get("/ui/users/api-alice", follow_redirects=False).status_code == 303


def test_the_sign_in_form_needs_its_own_csrf_token(client: TestClient, world: World) -> None:
    """A page elsewhere cannot post the form to sign the browser in as someone else's client (login CSRF)."""
    forged = client.post("/ui/login", data={"token": "token-alice", "next": "/ui/users/api-alice"})
    assert forged.status_code == 403 and COOKIE not in client.cookies
    other = TestClient(client.app)  # another browser's form token is worth nothing here
    stolen = _csrf(other.get("/ui/login").text)
    assert client.post("/ui/login", data={"token": "token-alice", "csrf": stolen}).status_code == 403
    assert _sign_in(client)
