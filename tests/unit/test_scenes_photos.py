"""Scene tags of real photos with the packaged Lite2 weights: GCompris' monument photos are architecture, its cat
and dog are not; the recognizer gives tags and landmark decisions from one forward pass.

The photos come from Debian's gcompris-qt-data (the demo's source), read in place; skipped when it is absent.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.imaging import decode_photo
from shared.index import l2_normalize
from shared.model import Embedder, EmbedderConfig
from shared.recognition import LandmarkInfo, Recognizer, build_bundle_from_embeddings
from shared.scenes import landmark_mass, load_mapping, scene_tags

pytestmark = pytest.mark.slow

MONUMENTS = ("tajMahal", "colosseum", "neuschwansteinCastle", "greatStupa", "reimsCathedral")
ANIMALS = ("cat", "dog")
CONFIG = EmbedderConfig()  # the shipped defaults (Lite2, GeM, long side 384)


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    from devtools.demo_data import DEFAULT_RCC_DIR, extract_rcc

    if not DEFAULT_RCC_DIR.is_dir():
        pytest.skip(f"{DEFAULT_RCC_DIR} is absent: install Debian's gcompris-qt-data for the sample photos")
    wanted = {f"{n}.webp" for n in MONUMENTS + ANIMALS}
    out: dict[str, bytes] = {}
    for rcc in ("explore_monuments.rcc", "explore_farm_animals.rcc"):
        for name, data in extract_rcc(Path(DEFAULT_RCC_DIR) / rcc):
            base = name.rsplit("/", 1)[-1]
            if base in wanted:
                out[base.removesuffix(".webp")] = data
    missing = set(MONUMENTS + ANIMALS) - set(out)
    if missing:
        pytest.skip(f"gcompris-qt-data lacks {sorted(missing)}")
    return out


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(CONFIG, device="cpu", classifier=True, threads=1)


@pytest.fixture(scope="module")
def logits(photos: dict[str, bytes], embedder: Embedder) -> dict[str, np.ndarray]:
    names = list(MONUMENTS + ANIMALS)
    images = [Image.open(io.BytesIO(photos[n])).convert("RGB") for n in names]
    emb, lg = embedder.embed_with_logits(images)
    np.testing.assert_allclose(emb, embedder.embed(images), atol=1e-5)  # same embedding as without logits
    assert lg.shape == (len(names), 1000)
    return dict(zip(names, lg, strict=True))


def test_monuments_are_architecture(logits: dict[str, np.ndarray]) -> None:
    m = load_mapping()
    for name in MONUMENTS:
        tags = scene_tags(logits[name][None], m)[0]
        assert "architecture" in tags, (name, tags)


def test_animals_are_not_architecture(logits: dict[str, np.ndarray]) -> None:
    m = load_mapping()
    for name in ANIMALS:
        tags = scene_tags(logits[name][None], m)[0]
        assert "architecture" not in tags, (name, tags)
    arch_mass = landmark_mass(np.stack([logits[n] for n in MONUMENTS]), m)
    animal_mass = landmark_mass(np.stack([logits[n] for n in ANIMALS]), m)
    assert animal_mass.max() < 0.1 < arch_mass.min()
    assert "pets" in scene_tags(logits["dog"][None], m)[0]


def test_recognizer_tags_and_decides_in_one_pass(photos: dict[str, bytes], embedder: Embedder) -> None:
    decoded = {n: decode_photo(photos[n], min_side=CONFIG.image_size) for n in MONUMENTS + ANIMALS}
    emb = l2_normalize(embedder.embed([decoded[n].image for n in MONUMENTS + ANIMALS]))
    k = len(MONUMENTS)
    bundle = build_bundle_from_embeddings(
        version="scenes-test",
        model=embedder.describe(),
        landmarks=tuple(LandmarkInfo(i + 1, n, n) for i, n in enumerate(MONUMENTS)),
        gallery=emb[:k],
        gallery_landmarks=np.arange(1, k + 1),
        non_landmarks=emb[k:],
        margin_share=0.0,
    )
    recognizer = Recognizer(bundle, embedder)
    results = recognizer.recognize_with_scenes([decoded["colosseum"], decoded["cat"]])
    (colosseum, colosseum_tags), (cat, cat_tags) = results
    assert recognizer.slug(colosseum.landmark_id) == "colosseum" and "architecture" in colosseum_tags
    assert cat.landmark_id is None and "architecture" not in cat_tags
    matches, tags = recognizer.recognize_photos_with_scenes([decoded["colosseum"]])[0]
    assert matches[0].landmark == "colosseum" and tags == colosseum_tags
