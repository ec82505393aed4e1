"""The shared fetch -> decode -> embed loop: failures are reported in place and never stop a batch."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.imaging.batches import OBJECT_SKIPPED, decoded_batches, embed_objects, file_loader
from shared.storage import ObjectMissing


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def test_decoded_batches_report_bad_files_and_keep_input_positions(tmp_path: Path) -> None:
    paths = []
    for i, data in enumerate([_jpeg((255, 0, 0)), b"not an image", _jpeg((0, 255, 0)), None, _jpeg((0, 0, 255))]):
        path = tmp_path / f"{i}.jpg"
        if data is not None:
            path.write_bytes(data)
        paths.append(path)

    batches = list(decoded_batches(paths, file_loader(min_side=32), batch_size=2))

    assert [b.indices for b in batches] == [[0], [2], [4]]
    assert [i for b in batches for i, _ in b.failed] == [1, 3]
    assert all(min(img.size) == 32 for b in batches for img in b.images)


def test_an_unreachable_store_stops_the_loop_instead_of_skipping_photos() -> None:
    def load(obj: tuple[str, str]):
        raise ConnectionRefusedError("s3 down")

    with pytest.raises(ConnectionRefusedError):
        list(decoded_batches([("b", "k")], load, batch_size=4, skipped=OBJECT_SKIPPED))


class _FakeClient:
    """Only what ``read_object`` calls: a missing key answers as S3 does (NoSuchKey -> ObjectMissing)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects


class _MeanEmbedder:
    def embed(self, images):
        return np.stack([np.asarray(im, np.float32).mean(axis=(0, 1)) for im in images])


def test_embed_objects_embeds_what_decodes_and_names_what_did_not(monkeypatch: pytest.MonkeyPatch) -> None:
    store = {"a.jpg": _jpeg((255, 0, 0)), "c.jpg": _jpeg((0, 0, 255))}

    def read_object(client, bucket, key, *, max_bytes):
        if key not in store:
            raise ObjectMissing(f"s3://{bucket}/{key}")
        return store[key]

    monkeypatch.setattr("shared.imaging.batches.read_object", read_object)
    seen: list[int] = []
    embedded = embed_objects(
        _FakeClient(store),  # type: ignore[arg-type]
        _MeanEmbedder(),
        [("g", "a.jpg"), ("g", "b.jpg"), ("g", "c.jpg")],
        min_side=32,
        batch_size=2,
        progress=seen.append,
    )

    assert embedded.ok == [0, 2]
    assert [key for key, _ in embedded.failed] == ["b.jpg"]
    assert embedded.embeddings.shape == (2, 3)
    assert embedded.embeddings[0][0] > 200 and embedded.embeddings[1][2] > 200
    assert sum(seen) == 3
