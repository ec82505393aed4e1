"""A corrupt upload's failure through the real pipeline steps (SeaweedFS S3, PostgreSQL, a small real model):
`failures list/show` shows it, and after the object is fixed `failures retry` makes it processed and resolved."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from minio import Minio
from PIL import Image, ImageDraw
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from devtools.stack import seaweed
from devtools.stack.testing import flushed_redis, private_seaweed
from shared.db import migrate
from shared.db.models import Landmark, ModelStatus, ModelVersion, Photo, PhotoStatus, TaskFailure
from shared.errors import PermanentError
from shared.ops.failures import get_failure, list_failures, plan_retry
from shared.photos import apply, recognize
from shared.photos import records as photos
from shared.photos.failures import record_failure
from shared.settings import Settings
from workers.celery_app import REPROCESS_PRIORITY
from workers.fleet import priority_key

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/10"  # a database of its own: no dev worker consumes it
CLI = "import typer; from workers.cli import ops as cli_ops; app = typer.Typer(); cli_ops.register(app); app()"
BUCKET = f"ops-photos-{uuid.uuid4().hex[:8]}"
KEY = "users/falice/tower.jpg"


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A private `weed mini` on free ports (never the dev one), stopped after the module."""
    state = tmp_path_factory.mktemp("weed-state")
    with private_seaweed(state, access_key="ops-test", secret_key="ops-test-secret") as settings:
        yield settings


@pytest.fixture(scope="module")
def recognizer():
    """A real (small) recognizer: the shared embedder and bundle builder on drawn towers and noise."""
    from shared.model import Embedder, EmbedderConfig
    from shared.recognition import LandmarkInfo, build_bundle_from_embeddings
    from shared.recognition.recognizer import Recognizer

    embedder = Embedder(EmbedderConfig(image_size=128), device="cpu", threads=1)
    bundle = build_bundle_from_embeddings(
        version="ops-f1",
        model=embedder.describe(),
        landmarks=[LandmarkInfo(1, "f_tower", "Drawn Tower", "Paintville", "Nowhere", None, None)],
        gallery=embedder.embed([tower(i) for i in range(6)]),
        gallery_landmarks=np.ones(6, dtype=np.int64),
        non_landmarks=embedder.embed([noise(i) for i in range(6)]),
    )
    return Recognizer(bundle, embedder)


def tower(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (200, 260), (140, 190, 235))
    draw = ImageDraw.Draw(image)
    j = int(rng.integers(-6, 6))
    draw.rectangle([85 + j, 40, 115 + j, 250], fill=(110, 80, 50))
    draw.polygon([(70 + j, 60), (100 + j, 5), (130 + j, 60)], fill=(60, 60, 60))
    return image


def noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (220, 220, 3), dtype=np.uint8))


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    with flushed_redis(BROKER) as client:
        yield client


@pytest.fixture
def database(make_scratch_database) -> Iterator[tuple[str, sessionmaker[Session], int]]:
    url = make_scratch_database(create=False)
    migrate.upgrade(url)
    engine = create_engine(url, poolclass=NullPool)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with factory.begin() as session:
        session.add(Landmark(slug="f_tower", name="Drawn Tower"))
        version = ModelVersion(version="ops-f1", backbone="efficientnet_lite2", status=ModelStatus.active)
        session.add(version)
        session.flush()
        version_id = version.id
    yield url, factory, version_id
    engine.dispose()


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LANDMARKS_DATABASE_URL": url, "LANDMARKS_BROKER_URL": BROKER,
           "LANDMARKS_RESULT_BACKEND": BROKER, "PYTHONPATH": str(REPO_ROOT)}  # fmt: skip
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def put(client: Minio, data: bytes) -> None:
    client.put_object(BUCKET, KEY, io.BytesIO(data), len(data), content_type="image/jpeg")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def process(factory: sessionmaker[Session], client: Minio, recognizer, photo_id: uuid.UUID, version_id: int) -> str:
    """What the recognize and albums tasks do for one photo, with the same service calls."""
    with factory.begin() as session:
        ref = recognize.claim_photo(session, photo_id)
    assert ref is not None
    try:
        outcome = recognize.recognize_object(client, recognizer, ref, max_bytes=10_000_000, max_pixels=50_000_000)
    except PermanentError as exc:
        with factory.begin() as session:
            record_failure(session, task_name="recognition.recognize_photo", task_id="t-1", reason=exc.reason,
                           message=str(exc), photo_id=photo_id, error_type=type(exc.__cause__ or exc).__name__,
                           traceback=traceback.format_exc(limit=5))  # fmt: skip
        return "failed"
    with factory.begin() as session:
        return apply.apply_recognition(session, photo_id, ref.etag, version_id, outcome.to_json())


@pytest.mark.slow
def test_corrupt_upload_is_listed_then_retried_after_the_fix(weed, recognizer, database, broker) -> None:
    url, factory, version_id = database
    client = seaweed.client(weed.s3)
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    put(client, b"\xff\xd8\xff\xe0" + b"\x00" * 64)  # a JPEG header and nothing decodable after it
    with factory.begin() as session:
        created = photos.record_created(session, bucket=BUCKET, key=KEY, etag="e-bad", size=68,
                                        content_type="image/jpeg", owner="falice")  # fmt: skip
    photo_id = created.photo_id
    assert process(factory, client, recognizer, photo_id, version_id) == "failed"

    listed = cli(url, "failures", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["photo_id"] == str(photo_id) and row["key"] == KEY and row["bucket"] == BUCKET
    assert row["owner"] == "falice" and row["photo_status"] == "failed" and row["attempts"] == 1
    assert row["task_name"] == "recognition.recognize_photo" and row["resolved_at"] is None
    assert row["summary"].startswith("shared.errors.PermanentError")  # the traceback's last line
    assert row["reason"].split(":")[0] in ("corrupt", "truncated", "unsupported", "not_an_image", "too_small")
    shown = cli(url, "failures", "show", str(row["id"]), "--json")
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" in json.loads(shown.stdout)["traceback"]

    put(client, jpeg(tower(42)))  # the object is fixed (same key)
    retried = cli(url, "failures", "retry", str(row["id"]))
    assert retried.returncode == 0, retried.stderr
    assert "retrying 1 photos (1 reset to pending)" in retried.stdout
    with factory() as session:
        assert session.get(Photo, photo_id).status == PhotoStatus.pending
        assert session.get(TaskFailure, row["id"]).resolved_at is None  # nothing resolves until it succeeds
    [raw] = broker.lrange(priority_key("recognize", REPROCESS_PRIORITY), 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "recognition.recognize_photo"
    assert json.loads(base64.b64decode(message["body"]))[0] == [str(photo_id)]

    assert process(factory, client, recognizer, photo_id, version_id) == "applied"
    with factory() as session:
        assert session.get(Photo, photo_id).status == PhotoStatus.done
        assert session.get(TaskFailure, row["id"]).resolved_at is not None
    assert json.loads(cli(url, "failures", "list", "--json").stdout) == []
    assert len(json.loads(cli(url, "failures", "list", "--resolved", "--json").stdout)) == 1


def test_retry_plan_skips_what_cannot_be_retried(db_session: Session) -> None:
    def created(key: str, owner: str | None) -> uuid.UUID:
        return photos.record_created(db_session, bucket="ops-retry", key=key, etag="e", size=1, content_type=None,
                                     owner=owner).photo_id  # fmt: skip

    def failed(photo_id: uuid.UUID | None, **where: str) -> int:
        row = record_failure(db_session, task_name="recognition.recognize_photo", reason="decode_error",
                             message="broken", photo_id=photo_id, **where)  # fmt: skip
        db_session.flush()
        return row.id

    ok = created("users/ralice/ok.jpg", "ralice")
    ok_failure = failed(ok)
    orphan = created("misc/orphan.jpg", None)  # record_created already failed it with no_owner
    orphan_failure = db_session.query(TaskFailure.id).filter(TaskFailure.photo_id == orphan).scalar()
    gone = created("users/ralice/gone.jpg", "ralice")
    gone_failure = failed(gone)
    photos.record_removed(db_session, bucket="ops-retry", key="users/ralice/gone.jpg")
    objectless = failed(None, bucket="ops-retry", key="users/ralice/never-ingested.jpg")
    missing = 2_000_000_000

    plan = plan_retry(db_session, [ok_failure, orphan_failure, gone_failure, objectless, missing])

    assert plan.photo_ids == [ok] and plan.reset == 1
    assert plan.objects == [("ops-retry", "users/ralice/never-ingested.jpg")]
    reasons = dict(plan.skipped)
    assert set(reasons) == {orphan_failure, gone_failure, missing}
    assert "no owner" in reasons[orphan_failure] and "deleted" in reasons[gone_failure]
    assert reasons[missing] == "no such failure"
    assert db_session.get(Photo, ok).status == PhotoStatus.pending
    assert db_session.get(Photo, orphan).status == PhotoStatus.failed
    assert get_failure(db_session, ok_failure).resolved_at is None
    assert [f.id for f in list_failures(db_session, limit=500) if f.id == ok_failure] == [ok_failure]
