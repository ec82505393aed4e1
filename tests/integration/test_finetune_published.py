"""Fine-tuned models through the publish path: a private `weed mini`, the real PostgreSQL (the test's transaction,
rolled back), drawn photos made here, CPU at 64 px.

- a tiny ``finetune`` run is published (folder + models bucket + model_versions row), loaded the way workers load
  it (download into an empty model store), and embeds exactly as the network did in memory; an altered
  ``backbone.pt`` in the bucket is refused;
- ``train_model_version`` in ``finetune`` mode writes the tuned tensors into the bundle it publishes, with the
  head or (``head=False``) without it, for the untrained decision on the tuned features.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from minio import Minio
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from devtools.stack import seaweed
from devtools.stack.testing import drawn_photo as drawn
from devtools.stack.testing import private_seaweed
from shared.gallery.catalog import import_rows
from shared.gallery.formats import GalleryRow
from shared.index import l2_normalize
from shared.model import Embedder, EmbedderConfig
from shared.model.head import project
from shared.recognition import Bundle, BundleIntegrityError, LandmarkInfo, Thresholds, download_bundle
from shared.recognition.bundle import BACKBONE_FILE, MANIFEST
from shared.training.finetune import FinetuneResult, finetune, pooled_features
from shared.training.service import FinetuneOptions, train_model_version
from shared.training.trainer import TrainConfig, TrainingData
from shared.versions import registry
from shared.versions.build import publish_bundle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = EmbedderConfig(image_size=64)
TINY = TrainConfig(epochs=1, stage_epochs=1, embedding_dim=8, batch_size=3, curriculum=False, input_dropout=0.0)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    state = tmp_path_factory.mktemp("weed-finetune")
    with private_seaweed(state, access_key="finetune-test", secret_key="finetune-test-secret") as settings:
        yield seaweed.client(settings.s3)


@pytest.fixture
def buckets(s3: Minio) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    names = {"models": f"models-{tag}", "gallery": f"gallery-{tag}"}
    for name in names.values():
        s3.make_bucket(name)
    return names


def in_memory(result: FinetuneResult, images: list[Image.Image]) -> np.ndarray:
    pooled = pooled_features(images, CONFIG, result.backbone_state, result.pooling_state, device="cpu")
    return project(result.train.head_state, pooled)


def test_a_published_fine_tuned_bundle_loads_in_a_worker_and_embeds_like_the_network(
    s3: Minio, buckets: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    images = [drawn(k, s) for k in (0, 1, 2) for s in range(3)]
    labels = np.repeat([0, 1, 2], 3)
    result = finetune(lambda i: images[i], TrainingData(labels, 2, [""] * 9), TINY, CONFIG, blocks=1, device="cpu")
    emb = in_memory(result, images)
    version = f"vft-{uuid.uuid4().hex[:8]}"
    bundle = Bundle(
        version=version,
        model={**CONFIG.to_dict(), "embedding_dim": 8, "finetune": {"blocks": 1}},
        thresholds=Thresholds(global_score=0.5, verification=0.5, geo=0.4),
        landmarks=(LandmarkInfo(1, "red", "Red"), LandmarkInfo(2, "blue", "Blue")),
        centroids=l2_normalize(emb[[0, 3]]),
        centroid_landmarks=np.array([1, 2]),
        references=emb[:6],
        reference_landmarks=np.repeat([1, 2], 3),
        head_state=result.train.head_state,
        backbone_state=result.tuned_state,
    )
    row = publish_bundle(session_factory, s3, bundle, models_bucket=buckets["models"], model_store=tmp_path / "built")
    assert (tmp_path / "built" / version / BACKBONE_FILE).is_file()
    assert s3.stat_object(buckets["models"], f"{version}/{BACKBONE_FILE}").size > 0

    worker = registry.load_recognizer(row, s3, buckets["models"], tmp_path / "worker", device="cpu", threads=1)
    assert (tmp_path / "worker" / version / BACKBONE_FILE).is_file()  # fetched from the bucket, not the build folder
    queries = [drawn(0, 10), drawn(1, 11), drawn(2, 12)]
    np.testing.assert_allclose(worker.embed(queries), in_memory(result, queries), atol=1e-4)

    data = s3.get_object(buckets["models"], f"{version}/{BACKBONE_FILE}").read()
    altered = data[:-64] + bytes(64)
    s3.put_object(buckets["models"], f"{version}/{BACKBONE_FILE}", io.BytesIO(altered), len(altered))
    with pytest.raises(BundleIntegrityError, match="sha256 mismatch"):
        download_bundle(s3, buckets["models"], version, tmp_path / "another-worker" / version)
    assert not (tmp_path / "another-worker" / version).exists()


def _gallery(tmp_path: Path) -> list[GalleryRow]:
    rows = []
    tag = uuid.uuid4().hex[:6]
    for kind, name in enumerate(("red", "blue", "green")):
        for seed in range(3):
            path = tmp_path / f"{name}{seed}.jpg"
            drawn(kind, seed).save(path, "JPEG", quality=90)
            slug = f"{name}_{tag}"
            rows.append(GalleryRow(path, "landmark", slug, name, "Paintville", "Nowhere", None, None, "train"))
    for seed in range(4):
        path = tmp_path / f"plain{seed}.jpg"
        drawn(3, 100 + seed).save(path, "JPEG", quality=90)
        rows.append(GalleryRow(path, "non_landmark", None, "", "", "", None, None, "train"))
    return rows


def _train_on_drawn_gallery(
    s3: Minio,
    buckets: dict[str, str],
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    finetune: FinetuneOptions,
    progress: Any = None,
) -> Any:
    """Import the drawn gallery and run ``train_model_version`` on it in ``finetune`` mode (2 folds, 64 px)."""
    with session_factory.begin() as session:
        import_rows(session, s3, buckets["gallery"], _gallery(tmp_path))
    return train_model_version(
        session_factory,
        s3,
        Embedder(CONFIG, device="cpu", threads=1),
        TINY,
        models_bucket=buckets["models"],
        model_store=tmp_path / "store",
        min_side=64,
        feature_cache=None,
        folds=2,
        progress=progress,
        finetune=finetune,
    )


def test_training_in_finetune_mode_publishes_the_tuned_backbone(
    s3: Minio, buckets: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    phases: list[Any] = []
    row = _train_on_drawn_gallery(
        s3, buckets, session_factory, tmp_path, FinetuneOptions(blocks=1, device="cpu"), phases.append
    )
    assert row.metrics["training"]["mode"] == "finetune"
    folder = tmp_path / "store" / row.version
    manifest = json.loads((folder / MANIFEST).read_text())
    assert BACKBONE_FILE in manifest["files"] and manifest["model"]["finetune"]["blocks"] == 1
    assert "presence_gate" in manifest["model"]
    tuning = [p for p in phases if p.phase == "finetune"]
    assert tuning and all(p.run == 1 and p.runs == 4 for p in tuning)  # tuning, the final head, 2 folds
    assert [p.phase for p in phases][0] == "features" and phases[-1].phase == "done"
    worker = registry.load_recognizer(row, s3, buckets["models"], tmp_path / "worker", device="cpu", threads=1)
    assert worker.bundle.backbone_state is not None and worker.gate is not None
    assert worker.embed([drawn(0, 7)]).shape == (1, 1280 + 8)  # raw feature kept beside the 8-d head


def test_a_head_less_fine_tuned_model_is_the_tuned_backbone_under_the_untrained_decision(
    s3: Minio, buckets: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    options = FinetuneOptions(blocks=1, device="cpu", cached_views=2, head=False)
    row = _train_on_drawn_gallery(s3, buckets, session_factory, tmp_path, options)
    training = row.metrics["training"]
    assert training["mode"] == "finetune" and training["head"] is False and training["cached_views"] == 2
    assert row.metrics["gallery_photos"] == 9 and row.metrics["negatives"] == 4
    manifest = json.loads((tmp_path / "store" / row.version / MANIFEST).read_text())
    assert BACKBONE_FILE in manifest["files"] and manifest["model"]["finetune"]["head"] is False
    assert "presence_gate" not in manifest["model"]  # the untrained decision: no gate

    worker = registry.load_recognizer(row, s3, buckets["models"], tmp_path / "worker", device="cpu", threads=1)
    bundle = worker.bundle
    assert bundle.head_state is None and bundle.backbone_state is not None
    queries = [drawn(0, 20), drawn(1, 21)]
    tuned = Embedder(CONFIG, device="cpu", threads=1, backbone_state=bundle.backbone_state)
    assert worker.embed(queries).shape == (2, 1280)  # the raw pooled feature of the tuned backbone
    np.testing.assert_allclose(worker.embed(queries), l2_normalize(tuned.embed(queries)), atol=1e-4)
    untuned = Embedder(CONFIG, device="cpu", threads=1)
    assert not np.allclose(worker.embed(queries), l2_normalize(untuned.embed(queries)), atol=1e-3)
    # Every landmark's own photos sit in the references the verification votes with.
    assert set(bundle.reference_landmarks.tolist()) == {lm.id for lm in bundle.landmarks}
