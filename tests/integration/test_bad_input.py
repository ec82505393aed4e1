"""Hostile and odd uploads through the real pipeline: `weed mini`, the SeaweedFS bridge, Celery workers and
PostgreSQL, with a small demo model. Each bad upload ends failed with a clear reason, recorded once, its task run
once (no retry storm); each odd but valid one (huge panorama, CMYK, 16-bit, garbage GPS, a strange key) is done.

Test images are drawn with numpy and Pillow here; nothing is read from ../shared/data.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from minio import Minio
from PIL import ExifTags, Image, TiffImagePlugin
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from devtools.stack.testing import DemoModel, IsolatedStack
from shared.db.models import Photo, PhotoStatus, TaskFailure
from shared.events import CREATED, ObjectEvent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LANDMARKS = ("colosseum", "taj_mahal")
NEGATIVES = 6
DEADLINE_S = 240.0
FINAL = {PhotoStatus.done, PhotoStatus.failed, PhotoStatus.deleted}
RECOGNIZE = "recognition.recognize_photo"


@dataclass
class Stack:
    stack: IsolatedStack
    model: DemoModel
    engine: Engine
    factory: sessionmaker[Session]
    minio: Minio

    @property
    def bucket(self) -> str:
        return self.stack.settings.s3.photos_bucket

    def demo(self, name: str) -> bytes:
        return (self.model.data.out_dir / "uploads" / name).read_bytes()

    def upload(self, key: str, data: bytes, owner: str, content_type: str = "image/jpeg") -> None:
        self.minio.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type=content_type, metadata={"user": owner}
        )

    def final(self, keys: list[str], timeout: float = DEADLINE_S) -> dict[str, Photo]:
        """Wait until every key has a photo row in a final state; fail naming those that have not."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            with self.factory() as session:
                rows = session.execute(select(Photo).where(Photo.bucket == self.bucket, Photo.key.in_(keys)))
                found = {p.key: p for p in rows.scalars()}
            if all(k in found and found[k].status in FINAL for k in keys):
                return found
            if time.monotonic() > deadline:
                waiting = {k: found[k].status.value if k in found else "no row" for k in keys}
                pytest.fail(f"photos not final after {timeout:g} s: {waiting}")
            time.sleep(0.3)

    def failures(self, photo: Photo) -> list[TaskFailure]:
        with self.factory() as session:
            return list(session.execute(select(TaskFailure).where(TaskFailure.photo_id == photo.id)).scalars())

    def task_lines(self, photo_id: str) -> list[dict[str, Any]]:
        """The workers' JSON log lines of tasks run for the photo (``task_started``, ``task_finished``...)."""
        lines = []
        for path in sorted((Path(self.stack.settings.state_dir) / "logs").glob("worker-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if photo_id in line and line.startswith("{"):
                    lines.append(json.loads(line))
        return lines


@pytest.fixture(scope="module")
def stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from devtools import demo_data
    from devtools.stack import testing

    if not demo_data.DEFAULT_RCC_DIR.is_dir():
        pytest.skip(f"{demo_data.DEFAULT_RCC_DIR} is absent: install Debian's {demo_data.DEBIAN_PACKAGE} (make test)")
    state = tmp_path_factory.mktemp("bad-input")
    concurrency = {"ingest": 1, "recognize": 1, "albums": 1}
    with (
        testing.isolated_resources(pg_url, state / "state", db_prefix="landmarks_badinput") as settings,
        testing.started_demo_stack(
            settings, state / "demo", landmarks=LANDMARKS, negatives=NEGATIVES, concurrency=concurrency
        ) as up,
    ):
        try:
            yield Stack(up.stack, up.model, up.engine, up.factory, up.minio)
        finally:
            if not all(up.stack.registry.live(name) for name in up.stack.apps):
                sys.stderr.write(up.stack.logs())


# --- test images -------------------------------------------------------------------------------------------------


def jpeg(image: Image.Image, **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **options)
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def header_claims(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) claims ``width`` x ``height``; the scan data stays the small one."""
    at = data.index(b"\xff\xc0")
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


def noise_panorama(target_bytes: int) -> bytes:
    """A wide JPEG of random pixels (noise defeats compression) at least ``target_bytes`` long."""
    height = 3000
    width = int(target_bytes / (1.1 * height)) + 1  # about 1.17 bytes per pixel at quality 95
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return jpeg(Image.fromarray(pixels), quality=95)


def png_rgb16(width: int, height: int) -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write 48-bit PNGs)."""
    ramp = np.linspace(0, 65535, width, dtype=np.uint16)
    pixels = np.stack([np.tile(ramp, (height, 1)), np.tile(ramp[::-1], (height, 1)), np.full((height, width), 30000)])
    rows = pixels.transpose(1, 2, 0).astype(">u2").reshape(height, width * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def garbage_gps(image: Image.Image) -> bytes:
    """EXIF with a GPS block no camera should write: 999 degrees, a zero denominator, no hemisphere letters."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Broken"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "Q",
        ExifTags.GPS.GPSLatitude: (999.0, 75.0, 0.0),
        ExifTags.GPS.GPSLongitude: (TiffImagePlugin.IFDRational(1, 0), 0.0, 0.0),
        ExifTags.GPS.GPSAltitude: TiffImagePlugin.IFDRational(5, 0),
    }
    return jpeg(image, exif=exif.tobytes())


# --- tests -------------------------------------------------------------------------------------------------------


def test_bad_uploads_fail_once_with_a_reason_and_odd_ones_succeed(stack: Stack) -> None:
    owner = f"olga-{uuid.uuid4().hex[:6]}"
    photo = stack.demo("alice/colosseum.jpg")
    rgb = Image.open(io.BytesIO(photo)).convert("RGB")
    base = f"users/{owner}"
    bad = {
        f"{base}/empty.jpg": (b"", "empty"),
        f"{base}/truncated.jpg": (photo[: len(photo) // 2], "truncated"),
        f"{base}/notes.jpg": (b"shopping list: milk, eggs, bread\n" * 20, "not_an_image"),
        f"{base}/huge-header.jpg": (header_claims(jpeg(rgb.resize((64, 48))), 50_000, 50_000), "too_large"),
    }
    panorama = noise_panorama(60_000_000)
    assert len(panorama) >= 60_000_000
    good = {
        f"{base}/panorama.jpg": panorama,
        f"{base}/cmyk.jpg": jpeg(rgb.convert("CMYK")),
        f"{base}/grey16.png": png(Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)),
        f"{base}/rgb16.png": png_rgb16(640, 400),
        f"{base}/garbage-gps.jpg": garbage_gps(rgb),
    }
    for key, (data, _) in bad.items():
        stack.upload(key, data, owner)
    for key, data in good.items():
        stack.upload(key, data, owner, "image/png" if key.endswith(".png") else "image/jpeg")

    photos = stack.final([*bad, *good])
    assert {k: photos[k].status for k in good} == dict.fromkeys(good, PhotoStatus.done)
    assert {k: photos[k].status for k in bad} == dict.fromkeys(bad, PhotoStatus.failed)
    for key, (_, reason) in bad.items():
        assert (photos[key].error or "").startswith(f"{reason}: "), (key, photos[key].error)
    # Failures are recorded by another task (albums queue) after the photo's status: wait for every row.
    for key in bad:
        failures = wait_for_failures(stack, photos[key])
        assert [(f.reason.split(":")[0], f.attempts) for f in failures] == [(bad[key][1], 1)], key
        assert_ran_once(stack, photos[key])

    big = photos[f"{base}/panorama.jpg"]
    assert (big.width, big.height) == Image.open(io.BytesIO(panorama)).size  # recorded as uploaded, decoded small
    assert photos[f"{base}/garbage-gps.jpg"].lat is None and photos[f"{base}/garbage-gps.jpg"].lon is None
    for name in stack.stack.apps:
        assert stack.stack.registry.live(name) is not None, f"{name} died on bad input"


def wait_for_failures(stack: Stack, photo: Photo) -> list[TaskFailure]:
    import time

    deadline = time.monotonic() + DEADLINE_S
    while not (failures := stack.failures(photo)) and time.monotonic() < deadline:
        time.sleep(0.3)
    return failures


def assert_ran_once(stack: Stack, photo: Photo) -> None:
    """One recognition run for the photo, finished without a retry (a permanent error is not retried)."""
    lines = [line for line in stack.task_lines(str(photo.id)) if line.get("task") == RECOGNIZE]
    starts = [line for line in lines if line.get("event") == "task_started"]
    states = [line.get("state") for line in lines if line.get("event") == "task_finished"]
    assert (len(starts), states) == (1, ["success"]), (photo.key, lines)


def test_a_key_with_spaces_unicode_and_percent_round_trips(stack: Stack) -> None:
    owner = f"umit-{uuid.uuid4().hex[:6]}"
    keys = [
        f"phone/{uuid.uuid4().hex[:6]}/Été 2024/Tour Eiffel – 100% (1) ☀.jpg",
        f"phone/{uuid.uuid4().hex[:6]}/a+b %20 %2F & ?=#.jpg",
    ]
    for key in keys:
        stack.upload(key, stack.demo("alice/colosseum.jpg"), owner)
    photos = stack.final(keys)
    assert {k: p.status for k, p in photos.items()} == dict.fromkeys(keys, PhotoStatus.done)
    with stack.factory() as session:
        stored = set(session.scalars(select(Photo.key).where(Photo.key.in_(keys))))
    assert stored == set(keys)


def test_an_event_for_an_object_that_no_longer_exists(stack: Stack) -> None:
    """The object decides owner and content (the ingest task stats it), so an event for an object that is gone
    makes no photo row, whether its key names an owner or not: one failure each, never retried."""
    owner = f"nina-{uuid.uuid4().hex[:6]}"
    with_owner = f"users/{owner}/gone.jpg"  # the key names the owner
    no_owner = f"inbox/{uuid.uuid4().hex[:6]}/gone.jpg"  # the owner would come from the object's metadata
    celery = stack.stack.celery()
    results = {}
    for key in (with_owner, no_owner):
        record = ObjectEvent(
            CREATED, stack.bucket, key, 1234, "d41d8cd98f00b204e9800998ecf8427e", "image/jpeg", {},
            datetime.now(UTC), "test:stale",
        ).to_record()  # fmt: skip
        results[key] = celery.send_task("ingest.object_event", args=[record]).get(timeout=DEADLINE_S)
    assert results[with_owner] == results[no_owner] == {"action": "failed", "reason": "object_missing"}
    with stack.factory() as session:
        for key in (with_owner, no_owner):
            assert session.scalar(select(Photo.id).where(Photo.key == key)) is None
            recorded = session.execute(select(TaskFailure).where(TaskFailure.key == key)).scalars().all()
            assert [(f.reason.split(":")[0], f.attempts, f.photo_id) for f in recorded] == [("object_missing", 1, None)]
