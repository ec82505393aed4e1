"""Photos reach the network decoded to the side it keeps: the recognizer takes it from its bundle, the recognize
step and every gallery embedding (build, cleaning) decode with it, so queries and gallery see the same pixels."""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.imaging import DecodedPhoto
from shared.model.embedder import EmbedderConfig
from shared.photos.recognize import FetchedPhoto, PhotoRef, recognize_fetched
from shared.recognition import Bundle, LandmarkInfo, Recognizer, Thresholds
from shared.recognition.outcome import LandmarkMatch


class _NoEmbedder:
    def embed(self, images: Any) -> np.ndarray:
        raise AssertionError("not embedded here")


def _bundle(**model: Any) -> Bundle:
    e = np.eye(4, dtype=np.float32)
    return Bundle(
        version="v-fit",
        model={"backbone": "efficientnet_lite2", "image_size": 64, "embedding_dim": 4, **model},
        thresholds=Thresholds(global_score=0.6, verification=0.5, geo=0.3, margin=0.1),
        landmarks=(LandmarkInfo(1, "colosseum", "Colosseum", "Rome", "Italy", 41.89, 12.49),),
        centroids=e[:1],
        centroid_landmarks=np.array([1]),
        references=e[:1],
        reference_landmarks=np.array([1]),
    )


@pytest.mark.parametrize(
    ("model", "side", "fit"),
    [
        ({}, 64, "short"),  # bundles written before the decode was stored were built from the shorter side
        ({"resize": "long"}, 64, "short"),  # the default decode
        ({"resize": "long", "decode_fit": "long", "scales": [1.0, 1.5]}, 96, "long"),
        ({"resize": "square", "decode_fit": "long"}, 64, "short"),  # the shorter side is what a square needs
        ({"resize": "crop"}, 64, "short"),
    ],
)
def test_the_recognizer_decodes_to_the_side_its_network_keeps(model: dict[str, Any], side: int, fit: str) -> None:
    recognizer = Recognizer(_bundle(**model), _NoEmbedder())
    assert (recognizer.min_side, recognizer.fit) == (side, fit)


class _Recording:
    version = "test"
    min_side = 64
    fit = "long"

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def recognize_photos(self, photos: list[DecodedPhoto]) -> list[list[LandmarkMatch]]:
        self.sizes += [p.image.size for p in photos]
        return [[] for _ in photos]


def test_the_recognize_step_decodes_with_the_recognizers_fit() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), (90, 120, 150)).save(buffer, "JPEG")
    recognizer = _Recording()
    ref = PhotoRef(uuid.uuid4(), "photos", "users/u/a.jpg", "etag")

    recognize_fetched(recognizer, [ref], [FetchedPhoto(buffer.getvalue(), 1.0)], max_pixels=10_000_000)

    assert recognizer.sizes == [(64, 48)]  # the longer side at min_side; a shorter-side fit gave 85 x 64


def test_the_decode_is_part_of_the_network_config_a_bundle_stores() -> None:
    """Gallery and queries must be decoded alike: the setting goes into the config (stored in the bundle and the
    embedding cache's key), and a config read from an older bundle decodes the shorter side it was built from."""
    from shared.model.factory import config_from_settings
    from shared.settings import RecognitionSettings

    short = config_from_settings(RecognitionSettings())
    long = config_from_settings(RecognitionSettings(decode_fit="long"))
    assert (short.decode_fit, long.decode_fit) == ("short", "long")
    assert short.key() != long.key()
    assert EmbedderConfig.from_dict(long.to_dict()).decode_fit == "long"
    assert EmbedderConfig.from_dict({"backbone": "efficientnet_lite2"}).decode_fit == "short"
