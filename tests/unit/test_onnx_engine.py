"""The ONNX Runtime engine embeds as torch does (cosine >= 0.9999) on drawn photos of every shape, with a head,
tuned tensors and test-time augmentation; exports happen once per network and travel in the bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shared.model import Embedder, EmbedderConfig, onnx_export
from shared.model.embedder import DECODE_KEY, resolve_engine
from shared.model.head import linear_head_state
from shared.recognition import Bundle, LandmarkInfo, Recognizer, Thresholds, load_bundle, save_bundle
from shared.recognition.bundle import ONNX_FILE, read_manifest, sha256_file
from tests.unit.test_letterbox import PHOTOS

CONFIG = EmbedderConfig(image_size=96)
RNG = np.random.default_rng(7)
HEAD = linear_head_state(RNG.normal(size=(16, 1280)).astype(np.float32), np.zeros(16, np.float32))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


def pair(cache: Path, config: EmbedderConfig = CONFIG, **kwargs: object) -> tuple[Embedder, Embedder]:
    common = {"device": "cpu", "threads": 1, "classifier": True, "onnx_cache": cache, **kwargs}
    return Embedder(config, engine="torch", **common), Embedder(config, engine="onnxruntime", **common)  # type: ignore[arg-type]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_auto_picks_onnxruntime_on_a_cpu_in_fp32_and_torch_elsewhere() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_engine("auto", cpu) == "onnxruntime"
    assert resolve_engine("auto", cpu, "bf16") == "torch"
    assert resolve_engine("auto", cuda) == "torch"
    assert resolve_engine("torch", cpu) == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_engine("onnxruntime", cuda)
    with pytest.raises(ValueError, match="unknown engine"):
        resolve_engine("tensorrt", cpu)


def test_onnxruntime_embeds_and_classifies_every_shape_as_torch_does(cache: Path) -> None:
    torch_engine, ort_engine = pair(cache)
    a, logits_a = torch_engine.embed_with_logits(PHOTOS)
    b, logits_b = ort_engine.embed_with_logits(PHOTOS)
    assert ort_engine.engine == "onnxruntime" and ort_engine.net is None  # no torch network in memory
    assert ort_engine.pass_size == 1 and ort_engine.has_classifier
    assert b.shape == a.shape == (len(PHOTOS), 1280)
    assert cosines(a, b).min() >= 0.9999
    np.testing.assert_allclose(logits_b, logits_a, atol=1e-3)
    assert [p.name for p in cache.glob("*.onnx")] == [f"{ort_engine.network_digest()}.onnx"]


def test_the_graph_carries_the_head_and_test_time_augmentation_matches(cache: Path) -> None:
    config = EmbedderConfig(image_size=96, scales=(1.0, 0.75), flip=True)
    torch_engine, ort_engine = pair(cache, config, head_state=HEAD)
    a, b = torch_engine.embed(PHOTOS[:3]), ort_engine.embed(PHOTOS[:3])
    assert b.shape == (3, 16) and cosines(a, b).min() >= 0.9999
    single = pair(cache, head_state=HEAD)
    assert cosines(single[0].embed(PHOTOS[3:]), single[1].embed(PHOTOS[3:])).min() >= 0.9999


def test_a_network_is_exported_once_and_reused_by_its_hash(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = Embedder(CONFIG, engine="onnxruntime", device="cpu", threads=1, onnx_cache=cache)
    path = first.onnx_model_path()

    def no_export(*_: object, **__: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    again = Embedder(EmbedderConfig(image_size=200, flip=True), engine="onnxruntime", device="cpu", onnx_cache=cache)
    assert again.onnx_model_path() == path  # input size and augmentation are not part of the graph
    other_head = Embedder(CONFIG, engine="onnxruntime", device="cpu", head_state=HEAD, onnx_cache=cache)
    assert other_head.network_digest() != first.network_digest()


def test_cached_embeddings_are_kept_apart_by_engine(cache: Path) -> None:
    torch_engine, ort_engine = pair(cache)
    assert ort_engine.cache_key() != torch_engine.cache_key()


def test_cached_embeddings_are_kept_apart_by_decode(cache: Path) -> None:
    """Rows cached before photos were decoded to the network's long side came from other pixels: the folder name
    tells them apart, so they are never read back."""
    torch_engine, ort_engine = pair(cache)
    assert torch_engine.cache_key() == f"{CONFIG.key()}_{DECODE_KEY}" != CONFIG.key()
    assert ort_engine.cache_key().endswith(f"_onnxruntime_{DECODE_KEY}")


def test_a_built_bundle_carries_its_network_with_its_hash(cache: Path, tmp_path: Path) -> None:
    _, builder = pair(cache, head_state=HEAD)
    emb = builder.embed(PHOTOS[:4])
    bundle = Bundle(
        version="v-onnx",
        model={**CONFIG.to_dict(), "embedding_dim": 16},
        thresholds=Thresholds(global_score=0.5, verification=0.5, geo=0.4),
        landmarks=(LandmarkInfo(1, "a", "A"), LandmarkInfo(2, "b", "B")),
        centroids=emb[[0, 2]],
        centroid_landmarks=np.array([1, 2]),
        references=emb,
        reference_landmarks=np.array([1, 1, 2, 2]),
        head_state=HEAD,
        network_onnx=builder.export_onnx(HEAD, None),
    )
    folder = save_bundle(bundle, tmp_path / "v-onnx")
    assert read_manifest(folder)["files"][ONNX_FILE] == sha256_file(folder / ONNX_FILE)
    loaded = load_bundle(folder)
    recognizer = Recognizer.from_bundle(loaded, device="cpu", engine="onnxruntime", threads=1)
    got = recognizer.embed(PHOTOS[:4])
    assert recognizer.embedder.onnx_model_path() == folder / ONNX_FILE  # type: ignore[attr-defined]
    assert cosines(got, emb).min() >= 0.9999
