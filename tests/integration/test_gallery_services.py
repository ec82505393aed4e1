"""Gallery import (three formats), references and cleaning against a private `weed mini` and the real PostgreSQL.

Photos are drawn with Pillow (towers as the landmark, noise and stripes as planted off-topic photos) and, where
Debian's gcompris-qt-data is installed, taken from the demo data (monument views, farm animals planted).
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from minio import Minio
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devtools.stack import seaweed
from devtools.stack.testing import private_seaweed
from shared.db.models import GalleryPhoto, GalleryRole, Landmark
from shared.gallery.catalog import (
    UnknownGalleryPhoto,
    UnknownLandmark,
    content_key,
    import_rows,
    list_references,
    set_references,
)
from shared.gallery.cleaning import clean_gallery
from shared.gallery.formats import GalleryRow, gldv2_image_path, read_folder, read_gldv2, read_manifest
from shared.settings import Settings
from shared.storage import stat_object

pytestmark = pytest.mark.integration

MANIFEST_FIELDS = ["path", "kind", "landmark_id", "landmark_name", "city", "country", "lat", "lon", "split"]
RCC_DIR = Path("/usr/share/gcompris-qt/rcc")


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A private `weed mini` on free ports (never the dev one, whose bridge would see our uploads)."""
    state = tmp_path_factory.mktemp("weed-gallery")
    with private_seaweed(state, access_key="gallery-test", secret_key="gallery-test-secret") as settings:
        yield settings


@pytest.fixture
def s3(weed: Settings) -> tuple[Minio, str]:
    """The client and a bucket of the test's own."""
    client = seaweed.client(weed.s3)
    bucket = f"gallery-{uuid.uuid4().hex[:10]}"
    client.make_bucket(bucket)
    return client, bucket


@pytest.fixture(scope="module")
def embedder():
    from shared.model import Embedder, EmbedderConfig

    return Embedder(EmbedderConfig(image_size=128), device="cpu", threads=1)


def tower(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (200, 260), (140, 190, 235))
    d = ImageDraw.Draw(im)
    j, h = int(rng.integers(-10, 10)), int(rng.integers(0, 20))
    d.rectangle([0, 230, 200, 260], fill=(90, 140, 70))
    d.rectangle([85 + j, 40 + h, 115 + j, 250], fill=(110, 80, 50))
    d.polygon([(70 + j, 60 + h), (100 + j, 5 + h), (130 + j, 60 + h)], fill=(60, 60, 60))
    return im


def noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (220, 220, 3), dtype=np.uint8))


def stripes(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (240, 200), tuple(int(c) for c in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    for x in range(0, 240, 20):
        d.rectangle([x, 0, x + 8, 200], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


def _save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)
    return path


def _slug(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"  # the test database is shared: no slug clashes between runs


def _row(path: Path, slug: str | None, *, reference: bool = False) -> GalleryRow:
    kind = "landmark" if slug else "non_landmark"
    return GalleryRow(path, kind, slug, slug or "", "Paintville", "Nowhere", None, None, "train", reference)


def _roles(session: Session, slug: str) -> dict[str, GalleryRole]:
    query = select(GalleryPhoto.key, GalleryPhoto.role).join(Landmark).where(Landmark.slug == slug)
    return {key: role for key, role in session.execute(query)}


def _write_manifest(path: Path, rows: list[dict[str, object]], extra: list[str]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, MANIFEST_FIELDS + extra)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_unknown_landmark_rows_become_unknown_landmark_photos_once(db_session: Session, s3, tmp_path: Path) -> None:
    """The operator's photos of landmarks the gallery does not know: no landmark, their own role, kept apart from
    the everyday negatives; model builds read them as such (gallery_snapshot)."""
    from shared.versions.build import gallery_snapshot

    client, bucket = s3
    _save(tower(90), tmp_path / "capitol.jpg")
    _save(noise(9), tmp_path / "cat.jpg")
    rows = [{"path": "capitol.jpg", "kind": "unknown_landmark", "split": "train"}]
    rows.append({"path": "cat.jpg", "kind": "non_landmark", "split": "train"})
    manifest = _write_manifest(tmp_path / "m.csv", rows, [])

    first = import_rows(db_session, client, bucket, read_manifest(manifest).rows)
    assert (first.unknown_landmarks_added, first.negatives_added, first.landmarks_created) == (1, 1, 0)
    again = import_rows(db_session, client, bucket, read_manifest(manifest).rows)
    assert (again.unknown_landmarks_added, again.negatives_added, again.photos_known) == (0, 0, 2)
    snap = gallery_snapshot(db_session)
    unknown_keys = {key for _, key in snap.unknown_landmarks}
    negative_keys = {key for _, key in snap.negatives}
    assert len(unknown_keys) >= 1 and not unknown_keys & negative_keys
    photo = db_session.execute(select(GalleryPhoto).where(GalleryPhoto.key.in_(unknown_keys))).scalars().first()
    assert photo is not None and photo.landmark_id is None and photo.role == GalleryRole.unknown_landmark


def test_manifest_import_with_references_is_idempotent(db_session: Session, s3, tmp_path: Path) -> None:
    client, bucket = s3
    slug = _slug("tower")
    for i in range(3):
        _save(tower(i), tmp_path / f"t{i}.jpg")
    _save(noise(0), tmp_path / "n.jpg")
    base = {"landmark_id": slug, "landmark_name": "Drawn Tower", "city": "Paintville", "country": "Nowhere",
            "lat": 10.0, "lon": 20.0, "split": "train", "kind": "landmark"}  # fmt: skip
    rows = [{**base, "path": f"t{i}.jpg", "reference": "1" if i == 0 else "0"} for i in range(3)]
    rows.append({"path": "n.jpg", "kind": "non_landmark", "split": "train", "reference": ""})
    manifest = _write_manifest(tmp_path / "m.csv", rows, ["reference"])

    first = import_rows(db_session, client, bucket, read_manifest(manifest).rows)
    assert (first.landmarks_created, first.photos_added, first.references_set) == (1, 3, 1)
    assert (first.negatives_added, first.objects_uploaded) == (1, 4)
    again = import_rows(db_session, client, bucket, read_manifest(manifest).rows)
    assert (again.landmarks_created, again.photos_added, again.negatives_added, again.objects_uploaded) == (0, 0, 0, 0)
    assert (again.photos_known, again.references_set) == (4, 0)
    roles = _roles(db_session, slug)
    assert sorted(roles.values()) == sorted([GalleryRole.reference, GalleryRole.train, GalleryRole.train])
    for key in roles:
        assert stat_object(client, bucket, key).size > 0
    landmark = db_session.execute(select(Landmark).where(Landmark.slug == slug)).scalar_one()
    assert (landmark.name, landmark.lat, landmark.lon, landmark.city.name) == ("Drawn Tower", 10.0, 20.0, "Paintville")


def test_folder_import_and_reimport(db_session: Session, s3, tmp_path: Path) -> None:
    client, bucket = s3
    slug = _slug("pont")
    root = tmp_path / "tree"
    for i in range(3):
        _save(tower(10 + i), root / slug / f"{i}.jpg")
    _save(tower(20), root / slug / "references" / "r.jpg")
    _save(noise(1), root / "_negatives" / "noise.jpg")
    meta = tmp_path / "landmarks.csv"
    meta.write_text(f"slug,name,city,country,lat,lon\n{slug},Pont du Gard,Vers-Pont-du-Gard,France,43.947,4.535\n")

    first = import_rows(db_session, client, bucket, read_folder(root, meta).rows)
    assert (first.photos_added, first.references_set, first.negatives_added) == (4, 1, 1)
    again = import_rows(db_session, client, bucket, read_folder(root, meta).rows)
    assert (again.photos_added, again.negatives_added, again.objects_uploaded, again.photos_known) == (0, 0, 0, 5)
    landmark = db_session.execute(select(Landmark).where(Landmark.slug == slug)).scalar_one()
    assert (landmark.name, landmark.country, landmark.lat, landmark.lon) == ("Pont du Gard", "France", 43.947, 4.535)
    assert sorted(_roles(db_session, slug).values()).count(GalleryRole.reference) == 1


def test_gldv2_import_and_reimport(db_session: Session, s3, tmp_path: Path) -> None:
    client, bucket = s3
    landmark_id = str(900_000_000 + int(uuid.uuid4().int % 1_000_000))  # unique in the shared test database
    ids = [f"{uuid.uuid4().hex[:16]}" for _ in range(3)]
    for i, image_id in enumerate(ids[:2]):
        _save(tower(30 + i), gldv2_image_path(tmp_path, image_id))
    (tmp_path / "train.csv").write_text(
        "id,url,landmark_id\n" + "".join(f"{i},http://x/{i},{landmark_id}\n" for i in ids)
    )
    (tmp_path / "train_label_to_category.csv").write_text(
        f"landmark_id,category\n{landmark_id},http://commons.wikimedia.org/wiki/Category:Tour_Eiffel\n"
    )
    read = read_gldv2(tmp_path)
    assert len(read.rows) == 2 and read.skipped  # the third image was "not downloaded"
    first = import_rows(db_session, client, bucket, read.rows)
    assert (first.landmarks_created, first.photos_added) == (1, 2)
    again = import_rows(db_session, client, bucket, read_gldv2(tmp_path).rows)
    assert (again.landmarks_created, again.photos_added, again.photos_known) == (0, 0, 2)
    landmark = db_session.execute(select(Landmark).where(Landmark.slug == f"gldv2_{landmark_id}")).scalar_one()
    assert (landmark.name, landmark.lat, landmark.lon) == ("Tour Eiffel", None, None)


def test_reimport_never_restores_rejected_nor_demotes_references(db_session: Session, s3, tmp_path: Path) -> None:
    client, bucket = s3
    slug = _slug("keep")
    rows = [_row(_save(tower(40 + i), tmp_path / f"{i}.jpg"), slug) for i in range(3)]
    import_rows(db_session, client, bucket, rows)
    query = select(GalleryPhoto).join(Landmark).where(Landmark.slug == slug).order_by(GalleryPhoto.id)
    photos = db_session.execute(query).scalars().all()  # in the order of ``rows``
    photos[0].role, photos[1].role = GalleryRole.rejected, GalleryRole.reference
    db_session.flush()
    import_rows(db_session, client, bucket, rows)
    db_session.expire_all()
    assert [p.role for p in photos] == [GalleryRole.rejected, GalleryRole.reference, GalleryRole.train]
    # a row flagged reference promotes even a rejected photo: the hand-pick outranks cleaning
    report = import_rows(db_session, client, bucket, [_row(rows[0].path, slug, reference=True)])
    db_session.expire_all()
    assert report.references_set == 1 and photos[0].role == GalleryRole.reference


def test_refs_set_from_files_and_keys_and_list(db_session: Session, s3, tmp_path: Path) -> None:
    client, bucket = s3
    slug, other = _slug("refs"), _slug("norefs")
    rows = [_row(_save(tower(50 + i), tmp_path / f"{i}.jpg"), slug) for i in range(4)]
    rows.append(_row(_save(tower(60), tmp_path / "o.jpg"), other))
    import_rows(db_session, client, bucket, rows)
    keys = sorted(_roles(db_session, slug))

    new_file = _save(tower(55), tmp_path / "picked.jpg")
    first = set_references(db_session, client, bucket, slug, [keys[0], keys[1], new_file])
    assert (first.added, first.demoted, first.objects_uploaded) == (3, 0, 1)
    assert stat_object(client, bucket, first.keys[2]).size > 0
    second = set_references(db_session, client, bucket, slug, [keys[1], keys[2], keys[3]])
    assert (second.added, second.demoted) == (2, 2)  # keys[0] and the picked file go back to train
    roles = _roles(db_session, slug)
    assert {k for k, r in roles.items() if r == GalleryRole.reference} == {keys[1], keys[2], keys[3]}
    assert roles[keys[0]] == GalleryRole.train and roles[first.keys[2]] == GalleryRole.train

    listed = {lm.slug: lm for lm in list_references(db_session)}
    assert sorted(p.key for p in listed[slug].photos) == keys[1:]
    assert listed[other].photos == []  # landmarks without references are listed too
    assert [lm.slug for lm in list_references(db_session, slug)] == [slug]

    with pytest.raises(UnknownGalleryPhoto):
        set_references(db_session, client, bucket, slug, ["no/such/key.jpg"])
    with pytest.raises(UnknownLandmark):
        set_references(db_session, client, bucket, _slug("nope"), [keys[0]])


def test_cleaning_rejects_planted_off_topic_photos(
    session_factory: sessionmaker[Session], db_session: Session, s3, embedder, tmp_path: Path
) -> None:
    client, bucket = s3
    slug = _slug("clean")
    true_rows = [_row(_save(tower(100 + i), tmp_path / f"t{i}.jpg"), slug) for i in range(8)]
    planted = [_save(noise(7), tmp_path / "noise.jpg"), _save(stripes(7), tmp_path / "stripes.jpg")]
    import_rows(db_session, client, bucket, true_rows + [_row(p, slug) for p in planted])
    db_session.commit()
    planted_keys = {content_key(slug, p) for p in planted}

    report = clean_gallery(session_factory, client, embedder, max_distance=0.5, min_side=128, landmark=slug)
    [result] = report.landmarks
    assert (result.kept, result.rejected, result.failed) == (8, 2, 0)
    assert result.reference_source.startswith("auto") and result.references == 5
    db_session.expire_all()
    rows = db_session.execute(select(GalleryPhoto).join(Landmark).where(Landmark.slug == slug)).scalars().all()
    assert {r.key for r in rows if r.role == GalleryRole.rejected} == planted_keys
    assert all(r.cleaning_score is not None for r in rows)
    assert max(r.cleaning_score for r in rows if r.key not in planted_keys) < min(
        r.cleaning_score for r in rows if r.key in planted_keys
    )
    for key in planted_keys:  # rejected, never deleted
        assert stat_object(client, bucket, key).size > 0


def test_cleaning_accepts_candidates_near_hand_picked_references(
    session_factory: sessionmaker[Session], db_session: Session, s3, embedder, tmp_path: Path
) -> None:
    client, bucket = s3
    slug = _slug("cand")
    refs = [_row(_save(tower(200 + i), tmp_path / f"r{i}.jpg"), slug, reference=True) for i in range(3)]
    candidates = [_row(_save(tower(210 + i), tmp_path / f"c{i}.jpg"), slug) for i in range(3)]
    off_topic = _row(_save(stripes(3), tmp_path / "s.jpg"), slug)
    import_rows(db_session, client, bucket, refs + candidates + [off_topic])
    db_session.execute(
        GalleryPhoto.__table__.update()
        .where(GalleryPhoto.role == GalleryRole.train, GalleryPhoto.key.like(f"{slug}/%"))
        .values(role=GalleryRole.candidate)
    )
    db_session.commit()

    [result] = clean_gallery(session_factory, client, embedder, max_distance=0.5, min_side=128, landmark=slug).landmarks
    assert (result.reference_source, result.references) == ("hand-picked", 3)
    assert (result.kept, result.accepted, result.rejected) == (3, 3, 1)
    roles = _roles(db_session, slug)
    assert sorted(roles.values()).count(GalleryRole.reference) == 3  # references are anchors, never judged
    assert sorted(roles.values()).count(GalleryRole.train) == 3


@pytest.mark.slow
def test_cleaning_rejects_planted_animals_among_demo_monument_photos(
    session_factory: sessionmaker[Session], db_session: Session, s3, tmp_path: Path
) -> None:
    """Real photos: Debian's GCompris monuments (views of each) with farm animals planted in one gallery."""
    if not RCC_DIR.is_dir():
        pytest.skip(f"{RCC_DIR} is absent (apt-get install gcompris-qt-data)")
    from devtools.demo_data import prepare_demo
    from shared.model import Embedder, EmbedderConfig

    demo = prepare_demo(RCC_DIR, tmp_path / "demo")
    rows = read_manifest(demo.gallery_csv).rows
    landmarks = sorted({r.landmark for r in rows if r.landmark})[:2]
    slugs = {lm: _slug(lm) for lm in landmarks}
    true_rows = [
        GalleryRow(**{**vars(r), "landmark": slugs[r.landmark]}) for r in rows if r.landmark in slugs
    ]  # fmt: skip
    animals = [r.path for r in rows if not r.is_landmark][:4]
    target = slugs[landmarks[0]]
    client, bucket = s3
    import_rows(db_session, client, bucket, true_rows + [_row(p, target) for p in animals])
    db_session.commit()

    config = EmbedderConfig()  # the default backbone the threshold was measured with
    embedder = Embedder(config, device="cpu", threads=2)
    for slug in slugs.values():
        report = clean_gallery(
            session_factory, client, embedder, max_distance=0.5, min_side=config.image_size, landmark=slug
        )
        [result] = report.landmarks
        views = sum(1 for r in true_rows if r.landmark == slug)
        assert result.kept == views, result  # every view of the monument stays
        assert result.rejected == (len(animals) if slug == target else 0), result


def test_cli_import_refs_and_clean(weed: Settings, make_scratch_database, tmp_path: Path, monkeypatch) -> None:
    """`landmarks gallery import --folder`, `refs set`, `refs list` and `clean --wait` on a database of their own."""
    from typer.testing import CliRunner

    from shared.db import migrate
    from shared.db.session import make_engine
    from shared.settings import get_settings
    from workers import runtime
    from workers.cli.main import app

    url = make_scratch_database()
    migrate.upgrade(url)
    bucket = f"gallery-{uuid.uuid4().hex[:10]}"
    env = {
        "LANDMARKS_DATABASE_URL": url,
        "LANDMARKS_S3__ENDPOINT": weed.s3.endpoint,
        "LANDMARKS_S3__ACCESS_KEY": weed.s3.access_key,
        "LANDMARKS_S3__SECRET_KEY": weed.s3.secret_key.get_secret_value(),
        "LANDMARKS_S3__GALLERY_BUCKET": bucket,
        "LANDMARKS_RECOGNITION__DEVICE": "cpu",
        "LANDMARKS_RECOGNITION__IMAGE_SIZE": "128",
        "COLUMNS": "200",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caches = (get_settings, runtime.minio_client, runtime.session_factory)
    for cached in caches:
        cached.cache_clear()
    root = tmp_path / "tree"
    for i in range(6):
        _save(tower(300 + i), root / "drawn_tower" / f"{i}.jpg")
    _save(stripes(9), root / "drawn_tower" / "planted.jpg")
    refs = [_save(tower(320 + i), tmp_path / f"ref{i}.jpg") for i in range(3)]
    meta = tmp_path / "landmarks.csv"
    meta.write_text("slug,name,city,country,lat,lon\ndrawn_tower,Drawn Tower,Paintville,Nowhere,1.5,2.5\n")
    runner = CliRunner()
    try:
        first = runner.invoke(app, ["gallery", "import", "--folder", str(root), "--landmarks", str(meta)])
        assert first.exit_code == 0, first.output
        assert "photos added: 7" in first.output
        again = runner.invoke(app, ["gallery", "import", "--folder", str(root), "--landmarks", str(meta)])
        assert "photos added: 0" in again.output and "already known: 7" in again.output
        assert runner.invoke(app, ["gallery", "import"]).exit_code == 2  # no source given

        picked = runner.invoke(app, ["gallery", "refs", "set", "drawn_tower", *map(str, refs)])
        assert picked.exit_code == 0, picked.output
        listed = runner.invoke(app, ["gallery", "refs", "list"])
        assert "1 of 1 landmark(s) have hand-picked references" in listed.output
        unknown = runner.invoke(app, ["gallery", "refs", "set", "no_such_landmark", str(refs[0])])
        assert unknown.exit_code == 1 and "no_such_landmark" in unknown.output

        cleaned = runner.invoke(app, ["gallery", "clean", "--wait"])
        assert cleaned.exit_code == 0, cleaned.output
        assert "kept 6, rejected 1" in cleaned.output and "hand-picked" in cleaned.output
    finally:
        for cached in caches:
            cached.cache_clear()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            roles = conn.execute(select(GalleryPhoto.role, GalleryPhoto.key)).all()
    finally:
        engine.dispose()
    assert sorted(r for r, _ in roles).count(GalleryRole.rejected) == 1
    assert sorted(r for r, _ in roles).count(GalleryRole.reference) == 3


def test_cleaning_task_returns_the_report(
    session_factory: sessionmaker[Session], db_session: Session, weed: Settings, s3, monkeypatch, tmp_path: Path
) -> None:
    """The Celery task (called in-process) runs the same service with the worker's settings and clients."""
    import tasks.cleaning
    from tasks.context import WorkerContext

    client, bucket = s3
    slug = _slug("task")
    rows = [_row(_save(tower(400 + i), tmp_path / f"{i}.jpg"), slug) for i in range(5)]
    import_rows(db_session, client, bucket, [*rows, _row(_save(noise(4), tmp_path / "n.jpg"), slug)])
    db_session.commit()
    settings = weed.model_copy(update={"recognition": weed.recognition.model_copy(update={"image_size": 128})})
    ctx = WorkerContext(settings)
    ctx.__dict__.update(session_factory=session_factory, minio=client)  # the test's transaction and S3
    monkeypatch.setattr(tasks.cleaning, "context", lambda: ctx)
    report = tasks.cleaning.clean_gallery(landmark=slug)
    assert report["max_distance"] == settings.gallery.cleaning_max_distance
    [result] = report["landmarks"]
    assert (result["slug"], result["kept"], result["rejected"]) == (slug, 5, 1)
