"""The albums API against the real PostgreSQL (the test's rolled-back transaction) through FastAPI's TestClient.

S3 is not needed here: covers and photo URLs are presigned locally (no call to S3); thumbnails, which read the
object, are tested with a real SeaweedFS in test_browser_albums.py.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import (
    City,
    GalleryPhoto,
    Landmark,
    ModelStatus,
    ModelVersion,
    PhotoCorrection,
    User,
)
from shared.photos import records as photos
from shared.photos.apply import apply_recognition
from shared.settings import ApiClient, Settings
from shared.storage import make_minio
from workers.api import album_page_url, create_app

pytestmark = pytest.mark.integration

CLIENTS = {
    "everyone": ApiClient(token=SecretStr("token-everyone"), users=["*"]),
    "alice-app": ApiClient(token=SecretStr("token-alice"), users=["api-alice"]),
    "reader": ApiClient(token=SecretStr("token-reader"), users=["*"], read_only=True),
}
ALL = {"Authorization": "Bearer token-everyone"}
ALICE = {"Authorization": "Bearer token-alice"}
READER = {"Authorization": "Bearer token-reader"}


def outcome(slug: str | None, score: float = 0.8) -> dict:
    method = "global+verified" if slug else "none"
    return {"matches": [{"landmark": slug, "score": score, "method": method, "verified": bool(slug)}], "meta": {}}


@dataclass
class World:
    session: Session
    v1: int
    v2: int
    alice: list[uuid.UUID]  # 5 photos of the Colosseum, then 1 of the Trevi Fountain, then 1 of Pisa
    bob: uuid.UUID  # 1 photo of the Colosseum

    def add_photo(self, user: str, key: str, slug: str | None, score: float = 0.8) -> uuid.UUID:
        result = photos.record_created(
            self.session, bucket="photos", key=key, etag="e1", size=10, content_type="image/jpeg", owner=user
        )
        assert apply_recognition(self.session, result.photo_id, "e1", self.v1, outcome(slug, score)) == "applied"
        self.session.flush()  # the API reads through its own session
        return result.photo_id

    def reprocess(self, photo_id: uuid.UUID, slug: str | None, *, version: int | None = None) -> str:
        done = apply_recognition(self.session, photo_id, "e1", version or self.v1, outcome(slug, 0.9))
        self.session.flush()
        return done


@pytest.fixture
def world(db_session: Session) -> World:
    rome = City(name="Rome", country="Italy")
    pisa = City(name="Pisa", country="Italy")
    db_session.add_all([rome, pisa])
    db_session.flush()
    db_session.add_all(
        [
            Landmark(slug="api-colosseum", name="Colosseum", city_id=rome.id, country="Italy", lat=41.89, lon=12.49),
            Landmark(slug="api-trevi", name="Trevi Fountain", city_id=rome.id, country="Italy", lat=41.9, lon=12.48),
            Landmark(slug="api-pisa", name="Leaning Tower", city_id=pisa.id, country="Italy", lat=43.72, lon=10.4),
        ]
    )
    v1 = ModelVersion(version="api-v1", backbone="efficientnet_lite2", status=ModelStatus.active)
    v2 = ModelVersion(version="api-v2", backbone="efficientnet_lite2", status=ModelStatus.ready)
    db_session.add_all([v1, v2])
    db_session.flush()
    w = World(db_session, v1.id, v2.id, [], uuid.uuid4())
    w.alice = [w.add_photo("api-alice", f"users/api-alice/c{i}.jpg", "api-colosseum", 0.5 + i / 10) for i in range(5)]
    w.alice.append(w.add_photo("api-alice", "users/api-alice/t.jpg", "api-trevi"))
    w.alice.append(w.add_photo("api-alice", "users/api-alice/p.jpg", "api-pisa"))
    w.bob = w.add_photo("api-bob", "users/api-bob/c.jpg", "api-colosseum")
    return w


@pytest.fixture
def client(session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    minio = make_minio("127.0.0.1:9", "api-test", "api-test-secret", region="us-east-1")  # presigning only
    with TestClient(create_app(session_factory=session_factory, minio=minio, clients=CLIENTS)) as test_client:
        yield test_client


def test_openapi_spec_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/v1/users/{user}/albums",
        "/v1/users/{user}/albums/{landmark}",
        "/v1/photos/{photo_id}",
        "/v1/photos/{photo_id}/thumb",
        "/v1/photos/{photo_id}/reject",
        "/v1/photos/{photo_id}/assign",
    } <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/users/api-alice/albums"),
        ("get", "/v1/users/api-alice/albums/api-colosseum"),
        ("get", "/v1/photos/{photo}"),
        ("get", "/v1/photos/{photo}/thumb"),
        ("post", "/v1/photos/{photo}/reject"),
        ("post", "/v1/photos/{photo}/assign"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dG9rZW4="}])
def test_missing_or_wrong_token_is_401(client: TestClient, world: World, method: str, path: str, headers) -> None:
    response = client.request(method, path.format(photo=world.alice[0]), headers=headers, json={"landmark": "x"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_token_not_allowed_for_the_user_is_403(client: TestClient, world: World) -> None:
    assert client.get("/v1/users/api-bob/albums", headers=ALICE).status_code == 403
    assert client.get("/v1/users/api-bob/albums/api-colosseum", headers=ALICE).status_code == 403
    assert client.get("/v1/users/api-alice/albums", headers=ALICE).status_code == 200
    assert client.get("/v1/users/api-bob/albums", headers=ALL).status_code == 200


def test_another_users_photo_is_not_found(client: TestClient, world: World) -> None:
    """Neither read nor corrected, and its existence is not told: 404 as for a photo that does not exist."""
    bob = world.bob
    assert client.get(f"/v1/photos/{bob}", headers=ALICE).status_code == 404
    assert client.get(f"/v1/photos/{bob}/thumb", headers=ALICE).status_code == 404
    assert client.post(f"/v1/photos/{bob}/reject", headers=ALICE).status_code == 404
    assert client.post(f"/v1/photos/{bob}/assign", headers=ALICE, json={"landmark": "api-trevi"}).status_code == 404
    assert client.get(f"/v1/photos/{uuid.uuid4()}", headers=ALL).status_code == 404
    assert client.get("/v1/users/api-bob/albums/api-colosseum", headers=ALL).json()["album"]["photo_count"] == 1


def test_albums_grouped_by_city_with_counts_coordinates_and_covers(client: TestClient, world: World) -> None:
    body = client.get("/v1/users/api-alice/albums", headers=ALICE).json()
    assert body["user"] == "api-alice"
    cities = {(c["city"], c["country"]): c["albums"] for c in body["cities"]}
    assert set(cities) == {("Rome", "Italy"), ("Pisa", "Italy")}
    rome = {a["landmark"]: a for a in cities[("Rome", "Italy")]}
    assert [a["name"] for a in cities[("Rome", "Italy")]] == ["Colosseum", "Trevi Fountain"]
    colosseum = rome["api-colosseum"]
    assert colosseum["photo_count"] == 5 and (colosseum["lat"], colosseum["lon"]) == (41.89, 12.49)
    assert colosseum["cover"]["id"] == str(world.alice[4])  # the best-scored photo
    url = urlparse(colosseum["cover"]["url"])
    assert url.path == "/photos/users/api-alice/c4.jpg" and "X-Amz-Signature" in parse_qs(url.query)
    assert colosseum["cover"]["thumbnail_url"].endswith(f"/v1/photos/{world.alice[4]}/thumb?size=256")
    assert colosseum["url"].endswith("/v1/users/api-alice/albums/api-colosseum")
    assert rome["api-trevi"]["photo_count"] == 1


def test_user_without_albums_gets_an_empty_list(client: TestClient, world: World) -> None:
    assert client.get("/v1/users/api-nobody/albums", headers=ALL).json() == {"user": "api-nobody", "cities": []}


def test_album_photos_page_by_page(client: TestClient, world: World) -> None:
    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/users/api-alice/albums/api-colosseum", params=params, headers=ALICE).json()
        sizes.append(len(page["photos"]))
        seen += [p["id"] for p in page["photos"]]
        for photo in page["photos"]:
            assert photo["model_version"] == "api-v1" and photo["source"] == "auto"
            assert 0.5 <= photo["score"] <= 0.9
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1]
    assert sorted(seen) == sorted(str(p) for p in world.alice[:5])
    one_page = client.get("/v1/users/api-alice/albums/api-colosseum", params={"limit": 50}, headers=ALICE).json()
    assert [p["id"] for p in one_page["photos"]] == seen and one_page["next_cursor"] is None


def test_album_errors(client: TestClient, world: World) -> None:
    album = "/v1/users/api-alice/albums/api-colosseum"
    assert client.get(album, params={"cursor": "not-a-cursor"}, headers=ALICE).status_code == 400
    assert client.get(album, params={"limit": 0}, headers=ALICE).status_code == 422
    assert client.get(album, params={"limit": 201}, headers=ALICE).status_code == 422
    assert client.get("/v1/users/api-alice/albums/api-nowhere", headers=ALICE).status_code == 404


def test_photo_status_recognitions_and_empty_scene_tags(client: TestClient, world: World) -> None:
    photo_id = world.alice[5]
    world.reprocess(photo_id, "api-trevi", version=world.v2)
    body = client.get(f"/v1/photos/{photo_id}", headers=ALICE).json()
    assert body["user"] == "api-alice" and body["status"] == "done" and body["model_version"] == "api-v2"
    assert [(r["model_version"], r["landmark"], r["method"]) for r in body["recognitions"]] == [
        ("api-v2", "api-trevi", "global+verified"),
        ("api-v1", "api-trevi", "global+verified"),
    ]
    assert body["albums"] == [{"landmark": "api-trevi", "name": "Trevi Fountain", "source": "auto", "score": 0.9}]
    assert body["scene_tags"] == [] and body["corrections"] == []


def _album_ids(client: TestClient, slug: str) -> list[str]:
    response = client.get(f"/v1/users/api-alice/albums/{slug}", headers=ALICE)
    return [p["id"] for p in response.json()["photos"]] if response.status_code == 200 else []


def test_rejected_photo_leaves_the_album_and_stays_out_after_reprocessing(client: TestClient, world: World) -> None:
    photo_id = world.alice[0]
    response = client.post(f"/v1/photos/{photo_id}/reject", headers=ALICE, json={"landmark": "api-colosseum"})
    assert response.status_code == 200
    assert response.json()["albums"] == []
    assert response.json()["corrections"] == [{"landmark": "api-colosseum", "kind": "reject"}]
    assert str(photo_id) not in _album_ids(client, "api-colosseum")

    for version in (world.v1, world.v2):  # the same model again, then a newer one, both naming the Colosseum
        assert world.reprocess(photo_id, "api-colosseum", version=version) == "applied"
        assert str(photo_id) not in _album_ids(client, "api-colosseum")
    counts = client.get("/v1/users/api-alice/albums", headers=ALICE).json()["cities"][1]["albums"][0]
    assert (counts["landmark"], counts["photo_count"]) == ("api-colosseum", 4)
    detail = client.get(f"/v1/photos/{photo_id}", headers=ALICE).json()
    assert detail["recognitions"][0]["landmark"] == "api-colosseum"  # the model's view is still recorded
    assert detail["albums"] == []


def test_reject_without_landmark_leaves_every_album_then_409(client: TestClient, world: World) -> None:
    photo_id = world.alice[6]
    assert client.post(f"/v1/photos/{photo_id}/reject", headers=ALICE).json()["albums"] == []
    assert client.post(f"/v1/photos/{photo_id}/reject", headers=ALICE).status_code == 409
    assert _album_ids(client, "api-pisa") == []  # its only photo left: the album is gone
    assert client.get("/v1/users/api-alice/albums/api-pisa", headers=ALICE).status_code == 404


def test_rejection_is_a_negative_example(client: TestClient, world: World) -> None:
    """Always a correction row; a gallery row (role rejected) only for a user who shares photos for the gallery."""
    session = world.session
    session.execute(User.__table__.update().where(User.name == "api-alice").values(share_for_gallery=True))
    photo_id = world.alice[1]
    client.post(f"/v1/photos/{photo_id}/reject", headers=ALICE, json={"landmark": "api-colosseum"})
    correction = session.execute(select(PhotoCorrection).where(PhotoCorrection.photo_id == photo_id)).scalar_one()
    assert (correction.kind, correction.landmark.slug, correction.client) == ("reject", "api-colosseum", "alice-app")
    row = session.execute(select(GalleryPhoto).where(GalleryPhoto.photo_id == photo_id)).scalar_one()
    assert (row.role, row.source, row.bucket, row.key) == ("rejected", "user", "photos", "users/api-alice/c1.jpg")
    assert row.landmark.slug == "api-colosseum"

    client.post(f"/v1/photos/{world.bob}/reject", headers=ALL)  # bob has not opted in
    assert session.execute(select(GalleryPhoto).where(GalleryPhoto.photo_id == world.bob)).first() is None
    assert session.execute(select(PhotoCorrection).where(PhotoCorrection.photo_id == world.bob)).first() is not None


def test_assign_adds_a_manual_entry_that_recognition_leaves_alone(client: TestClient, world: World) -> None:
    session = world.session
    session.execute(User.__table__.update().where(User.name == "api-alice").values(share_for_gallery=True))
    photo_id = world.alice[5]  # in the Trevi album; the user says it shows the Colosseum too
    body = client.post(f"/v1/photos/{photo_id}/assign", headers=ALICE, json={"landmark": "api-colosseum"}).json()
    assert {(a["landmark"], a["source"]) for a in body["albums"]} == {
        ("api-trevi", "auto"),
        ("api-colosseum", "manual"),
    }
    assert str(photo_id) in _album_ids(client, "api-colosseum")
    row = session.execute(select(GalleryPhoto).where(GalleryPhoto.photo_id == photo_id)).scalar_one()
    assert (row.role, row.source, row.bucket, row.key) == ("candidate", "user", "photos", "users/api-alice/t.jpg")

    world.reprocess(photo_id, "api-pisa", version=world.v2)  # a newer model sees neither landmark the user chose
    after = client.get(f"/v1/photos/{photo_id}", headers=ALICE).json()["albums"]
    assert {(a["landmark"], a["source"]) for a in after} == {("api-pisa", "auto"), ("api-colosseum", "manual")}
    world.reprocess(photo_id, "api-colosseum", version=world.v2)  # naming the assigned one keeps it manual
    after = client.get(f"/v1/photos/{photo_id}", headers=ALICE).json()["albums"]
    assert {(a["landmark"], a["source"]) for a in after} == {("api-colosseum", "manual")}

    client.post(f"/v1/photos/{photo_id}/reject", headers=ALICE, json={"landmark": "api-colosseum"})
    assert str(photo_id) not in _album_ids(client, "api-colosseum")
    session.refresh(row)
    assert row.role == "rejected"  # the user's latest word


def test_assign_without_consent_writes_no_gallery_row(client: TestClient, world: World) -> None:
    response = client.post(f"/v1/photos/{world.bob}/assign", headers=ALL, json={"landmark": "api-trevi"})
    assert response.status_code == 200
    assert world.session.execute(select(GalleryPhoto).where(GalleryPhoto.photo_id == world.bob)).first() is None


def test_assign_and_reject_refusals(client: TestClient, world: World) -> None:
    photo = f"/v1/photos/{world.alice[0]}"
    assert client.post(f"{photo}/assign", headers=ALICE, json={"landmark": "api-nowhere"}).status_code == 404
    assert client.post(f"{photo}/reject", headers=ALICE, json={"landmark": "api-nowhere"}).status_code == 404
    assert client.post(f"{photo}/assign", headers=ALICE, json={}).status_code == 422
    assert client.post(f"{photo}/reject", headers=READER).status_code == 403
    assert client.post(f"{photo}/assign", headers=READER, json={"landmark": "api-trevi"}).status_code == 403
    assert client.get(photo, headers=READER).status_code == 200


def test_album_page_url_signs_the_browser_in(client: TestClient, world: World) -> None:
    settings = Settings(api_host="0.0.0.0", api_port=8123, api_tokens=CLIENTS)
    url = album_page_url(settings, "api-alice")
    assert url == "http://127.0.0.1:8123/ui/users/api-alice?token=token-alice"  # the client named for the user
    assert album_page_url(settings, "api-bob").endswith("/ui/users/api-bob?token=token-everyone")
    assert album_page_url(Settings(api_tokens={}), "x") == "http://127.0.0.1:8000/ui/users/x"
    path = urlparse(url)
    signed_in = client.get(f"{path.path}?{path.query}", follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui/users/api-alice"
    assert "httponly" in signed_in.headers["set-cookie"].lower()
    page = client.get("/ui/users/api-alice")
    assert page.status_code == 200 and "Colosseum" in page.text and "Trevi Fountain" in page.text


def test_pages_need_sign_in_and_the_right_user(client: TestClient, world: World) -> None:
    first = client.get("/ui/users/api-alice", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/ui/login?next=")
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/login").text).group(1)
    wrong = client.post("/ui/login", data={"token": "nope", "next": "/ui/users/api-alice", "csrf": csrf})
    assert wrong.status_code == 401
    csrf = re.search(r'name="csrf" value="([^"]+)"', wrong.text).group(1)  # each form gets its own
    login = client.post(
        "/ui/login", data={"token": "token-alice", "next": "https://evil.example/", "csrf": csrf},
        follow_redirects=False,
    )  # fmt: skip
    assert login.headers["location"] == "/ui/"  # no open redirect: the front door instead
    assert client.get("/ui/users/api-bob").status_code == 403
    assert client.get(f"/ui/photos/{world.bob}").status_code == 404
    assert client.get(f"/ui/photos/{world.alice[0]}").status_code == 200


def test_empty_token_is_refused_at_start(session_factory: sessionmaker[Session]) -> None:
    minio = make_minio("127.0.0.1:9", "k", "s", region="us-east-1")
    with pytest.raises(ValueError, match="empty token"):
        create_app(session_factory=session_factory, minio=minio, clients={"x": ApiClient(token=SecretStr(""))})


def test_access_log_lines_lose_the_sign_in_token() -> None:
    import logging

    from workers.cli.api import RedactTokens

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/ui/users/alice?a=1&token=s3cret&b=2", "1.1", 303), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    assert "s3cret" not in record.getMessage() and "token=***&b=2" in record.getMessage()


def test_cli_albums_json_has_the_apis_album_shape(client: TestClient, world: World, monkeypatch) -> None:
    """`landmarks albums --json` prints what GET /v1/users/{user}/albums answers (addresses under the API's)."""
    import contextlib
    import json

    from workers.api.shapes import ApiLinks, read_user_albums
    from workers.cli import photos as cli_photos

    presigner = make_minio("127.0.0.1:9", "api-test", "api-test-secret", region="us-east-1")
    links = ApiLinks("http://testserver", presigner)

    def unsigned(body: dict) -> dict:
        for city in body["cities"]:
            for album in city["albums"]:
                album["cover"]["url"] = album["cover"]["url"].split("?")[0]  # the signature's time differs
        return body

    api = client.get("/v1/users/api-alice/albums", headers=ALL).json()
    cli = read_user_albums(world.session, links, "api-alice").model_dump(mode="json")
    assert unsigned(cli) == unsigned(api)
    assert [a["landmark"] for c in api["cities"] for a in c["albums"]] == ["api-pisa", "api-colosseum", "api-trevi"]

    monkeypatch.setattr("workers.runtime.presign_client", lambda: presigner)
    monkeypatch.setattr("workers.api.urls.base_url", lambda settings: "http://testserver")
    monkeypatch.setattr("workers.runtime.db_session", lambda: contextlib.nullcontext(world.session))
    assert unsigned(json.loads(cli_photos.albums_json("api-alice"))) == unsigned(api)
