"""The album browser in headless Chromium against the real app: uvicorn on a free port, a scratch PostgreSQL
database, a private `weed mini` holding photos drawn with Pillow. Screenshots go to artifacts/browser/.

Chromium is Debian's (`apt-get install -y chromium`), driven by Playwright's Python package without any browser
download; the tests skip when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from PIL import Image, ImageDraw
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from devtools.stack import seaweed
from devtools.stack.testing import private_seaweed
from shared.db import migrate
from shared.db.models import City, Landmark, ModelStatus, ModelVersion
from shared.db.session import make_engine, make_session_factory, session_scope
from shared.photos import records as photos
from shared.photos.apply import apply_recognition
from shared.settings import ApiClient, Settings
from shared.storage import ensure_buckets
from workers.api import create_app

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-token"
BUCKET = "photos"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install -y chromium"),
]


def _free_port(also_free_at: int = 0) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not also_free_at:
            return port
        with socket.socket() as sock, contextlib.suppress(OSError):
            if port + also_free_at <= 65535:
                sock.bind(("127.0.0.1", port + also_free_at))
                return port


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A private `weed mini` on free ports (never the dev one), stopped after the module."""
    state = tmp_path_factory.mktemp("weed-state")
    with private_seaweed(state, access_key="browser-test", secret_key="browser-test-secret") as settings:
        ensure_buckets(seaweed.client(settings.s3), [BUCKET])
        yield settings


def _jpeg(colour: tuple[int, int, int], label: int) -> bytes:
    image = Image.new("RGB", (640, 480), colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle((80 + label * 30, 60, 400 + label * 30, 380), fill=(255 - colour[0], 200, 255 - colour[2]))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _outcome(slug: str, score: float) -> dict:
    match = {"landmark": slug, "score": score, "method": "global+verified", "verified": True}
    return {"matches": [match], "meta": {}, "scenes": {"architecture": score}}


class Server:
    """The app under uvicorn in a thread (no signal handlers there), on a free port."""

    def __init__(self, app) -> None:
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def album_world(weed: Settings, make_scratch_database) -> Iterator[tuple[sessionmaker[Session], dict]]:
    """A database of its own with alice's photos (3 Colosseum, 1 Trevi, 1 Pisa), their objects in weed."""
    url = make_scratch_database(create=False)
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    client = seaweed.client(weed.s3)
    ids: dict[str, list[uuid.UUID]] = {}
    plan = [("colosseum", (200, 60, 40)), ("colosseum", (180, 90, 40)), ("colosseum", (150, 70, 90))]
    plan += [("trevi", (40, 90, 200)), ("pisa", (60, 160, 60))]
    with session_scope(factory) as session:
        rome, pisa = City(name="Rome", country="Italy"), City(name="Pisa", country="Italy")
        session.add_all([rome, pisa])
        session.flush()
        session.add_all(
            [
                Landmark(slug="colosseum", name="Colosseum", city_id=rome.id, country="Italy", lat=41.89, lon=12.49),
                Landmark(slug="trevi", name="Trevi Fountain", city_id=rome.id, country="Italy", lat=41.9, lon=12.48),
                Landmark(slug="pisa", name="Leaning Tower of Pisa", city_id=pisa.id, country="Italy"),
            ]
        )
        version = ModelVersion(version="browser-v1", backbone="efficientnet_lite2", status=ModelStatus.active)
        session.add(version)
        session.flush()
        for i, (slug, colour) in enumerate(plan):
            key = f"users/alice/{slug}-{i}.jpg"
            data = _jpeg(colour, i)
            put = client.put_object(BUCKET, key, io.BytesIO(data), len(data), content_type="image/jpeg")
            etag = put.etag.strip('"')
            result = photos.record_created(
                session, bucket=BUCKET, key=key, etag=etag, size=len(data), content_type="image/jpeg", owner="alice"
            )
            apply_recognition(session, result.photo_id, etag, version.id, _outcome(slug, 0.7 + i / 20))
            ids.setdefault(slug, []).append(result.photo_id)
    yield factory, ids
    engine.dispose()


@pytest.fixture
def server(weed: Settings, album_world) -> Iterator[Server]:
    factory, _ = album_world
    clients = {"demo": ApiClient(token=SecretStr(TOKEN), users=["alice", "bob"])}
    app = create_app(session_factory=factory, minio=seaweed.client(weed.s3), clients=clients)
    with Server(app) as running:
        yield running


def test_thumbnails_come_from_the_users_object(server: Server, album_world, weed: Settings) -> None:
    import httpx2 as httpx

    _, ids = album_world
    photo = ids["colosseum"][0]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=auth) as http:
        small = http.get(f"/v1/photos/{photo}/thumb", params={"size": 100})
        assert small.status_code == 200 and small.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(small.content)).size == (128, 96)  # snapped up to 128, aspect kept
        assert http.get(f"/v1/photos/{photo}/thumb").content == http.get(f"/v1/photos/{photo}/thumb").content
        assert Image.open(io.BytesIO(http.get(f"/v1/photos/{photo}/thumb").content)).size == (256, 192)
        seaweed.client(weed.s3).remove_object(BUCKET, "users/alice/pisa-4.jpg")
        assert http.get(f"/v1/photos/{ids['pisa'][0]}/thumb").status_code == 404
        assert httpx.get(f"{server.url}/v1/photos/{photo}/thumb").status_code == 401


def test_album_page_in_chromium_and_reject(server: Server, album_world, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    _, ids = album_world
    rejected = ids["colosseum"][0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(f"{server.url}/ui/users/alice?token={TOKEN}")
            assert page.url == f"{server.url}/ui/users/alice"  # signed in; the token left the address bar
            cities = page.locator("section.city h2").all_inner_texts()
            assert cities == ["Pisa, Italy", "Rome, Italy"]
            titles = page.locator(".album-title").all_inner_texts()
            assert titles == ["Leaning Tower of Pisa", "Colosseum", "Trevi Fountain"]
            page.wait_for_function(
                "[...document.querySelectorAll('.album img')].every(i => i.complete && i.naturalWidth > 0)"
            )
            page.screenshot(path=str(tmp_path / "albums.png"), full_page=True)
            shutil.copy(tmp_path / "albums.png", ARTIFACTS / "albums.png")

            page.click(".album[data-landmark=colosseum] a")
            assert page.locator(".photo-count").inner_text() == "3"
            assert len(_rows(page, ".photo-card")) == 1  # a grid: the three cards side by side, not one per row
            assert page.locator(f".photo-card[data-photo='{rejected}']").count() == 1
            page.click(f".photo-card[data-photo='{rejected}'] a")
            page.wait_for_function("document.querySelector('.photo img').naturalWidth > 0")
            page.screenshot(path=str(tmp_path / "photo.png"), full_page=True)
            shutil.copy(tmp_path / "photo.png", ARTIFACTS / "photo.png")
            page.click(".membership[data-landmark=colosseum] button")

            page.wait_for_url(f"{server.url}/ui/users/alice/albums/colosseum")
            assert page.locator(".photo-count").inner_text() == "2"
            assert page.locator(f".photo-card[data-photo='{rejected}']").count() == 0
            assert page.locator(".photo-card").count() == 2
            page.screenshot(path=str(tmp_path / "after-reject.png"), full_page=True)
            shutil.copy(tmp_path / "after-reject.png", ARTIFACTS / "after-reject.png")
        finally:
            browser.close()


@contextlib.contextmanager
def _offline_page(sync_api, viewport: tuple[int, int] = (1100, 800)) -> Iterator[tuple[object, list[tuple[str, str]]]]:
    """A Chromium page that may reach 127.0.0.1 only: every other request is aborted and recorded as
    (resource type, URL)."""
    blocked: list[tuple[str, str]] = []

    def only_local(route) -> None:
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            blocked.append((route.request.resource_type, route.request.url))
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.route("**/*", only_local)
            yield page, blocked
        finally:
            browser.close()


def _shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / name, ARTIFACTS / name)


def _rows(page, selector: str) -> list[float]:
    """The distinct top edges of the matching cards: fewer rows than cards means a grid, not a list."""
    return sorted(
        {round(page.locator(selector).nth(i).bounding_box()["y"]) for i in range(page.locator(selector).count())}
    )


def test_docs_render_their_operations_offline(tmp_path: Path) -> None:
    """Swagger UI and ReDoc come from the package: with every non-local request blocked the operations show."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    clients = {"demo": ApiClient(token=SecretStr(TOKEN), users=["*"])}
    app = create_app(session_factory=None, minio=None, clients=clients)  # type: ignore[arg-type]  # docs only
    paths = set(app.openapi()["paths"])
    with Server(app) as running, _offline_page(sync_api) as (page, blocked):
        page.goto(f"{running.url}/docs")
        page.wait_for_selector(".opblock-summary", timeout=15_000)
        shown = page.locator(".opblock .opblock-summary-path").all_inner_texts()
        assert {text.replace("\u200b", "") for text in shown} == paths  # Swagger UI breaks paths with U+200B
        assert page.locator("#operations-albums-list_albums").count() == 1
        _shot(page, tmp_path, "docs.png")
        assert blocked == []  # Swagger UI asked nothing of the network

        page.goto(f"{running.url}/redoc")
        page.locator("h2", has_text="List Albums").wait_for(timeout=15_000)  # an operation's heading
        assert page.locator("h2", has_text="Photo Thumbnail").count() >= 1  # once per tag it carries
        _shot(page, tmp_path, "redoc.png")
    # ReDoc's only remote request is its own "API docs by Redocly" logo image; no script, style or font.
    assert [url for kind, url in blocked if kind != "image"] == []


def test_sign_in_lands_on_the_users_a_token_may_read(server: Server, album_world, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with _offline_page(sync_api) as (page, blocked):
        page.goto(f"{server.url}/")
        page.wait_for_url(f"{server.url}/ui/login?next=%2Fui%2F")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/ui/")
        assert page.locator(".user .user-name").all_inner_texts() == ["alice", "bob"]
        alice = page.locator(".user[data-user=alice]")
        assert (alice.locator(".album-count").inner_text(), alice.locator(".photo-count").inner_text()) == ("3", "5")
        bob = page.locator(".user[data-user=bob]")  # allowed, nothing uploaded yet
        assert (bob.locator(".album-count").inner_text(), bob.locator(".photo-count").inner_text()) == ("0", "0")
        _shot(page, tmp_path, "home.png")

        alice.locator("a").click()
        page.wait_for_url(f"{server.url}/ui/users/alice")
        assert len(_rows(page, ".album")) == 2  # Pisa's one album, Rome's two side by side
        page.click("nav.tabs >> text=Scenes")
        page.wait_for_url(f"{server.url}/ui/users/alice/scenes")
        assert page.locator(".scene .album-title").all_inner_texts() == ["Architecture"]
        page.wait_for_function(
            "[...document.querySelectorAll('.scene img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        _shot(page, tmp_path, "scenes.png")

        page.click(".scene[data-label=architecture] a")
        page.wait_for_url(f"{server.url}/ui/users/alice/scenes/architecture")
        assert page.locator(".photo-count").inner_text() == "5"
        assert page.locator(".photo-card").count() == 5
        assert len(_rows(page, ".photo-card")) == 1  # five cards in one row at 1100 px
        page.wait_for_function(
            "[...document.querySelectorAll('.photo-card img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        _shot(page, tmp_path, "scene.png")

        page.goto(f"{server.url}/ui/users/carol")
        assert page.locator("h1").inner_text() == "403"
    assert blocked == []
