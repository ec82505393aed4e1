"""The training feature cache is keyed by the object's content (its etag), not by bucket/key alone: a photo
overwritten under the same key is embedded again instead of training on its old content's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.imaging.batches import Embedded
from shared.storage import ObjectInfo
from shared.training import service


def test_an_overwritten_object_is_embedded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etags = {"users/alice/a.jpg": "e1"}
    content = {"e1": 1.0, "e2": 2.0}
    embedded: list[str] = []

    def stat(_client, bucket: str, key: str) -> ObjectInfo:
        return ObjectInfo(bucket, key, 1, etags[key])

    def embed(_client, _embedder, objects, **_kw) -> Embedded:
        embedded.extend(key for _, key in objects)
        return Embedded(np.array([[content[etags[k]]] * 3 for _, k in objects], np.float32), list(range(len(objects))))

    monkeypatch.setattr(service, "stat_object", stat)
    monkeypatch.setattr(service, "embed_objects", embed)
    objects = [("photos", "users/alice/a.jpg")]

    def features() -> np.ndarray:
        vectors, ok = service.cached_features(None, None, objects, cache_dir=tmp_path, min_side=8)
        assert ok == [0]
        return vectors[0]

    assert features()[0] == 1.0 and features()[0] == 1.0
    assert embedded == ["users/alice/a.jpg"]  # the second run came from the cache
    etags["users/alice/a.jpg"] = "e2"  # overwritten under the same key
    assert features()[0] == 2.0
    assert embedded == ["users/alice/a.jpg"] * 2


def test_features_are_embedded_from_photos_decoded_as_the_workers_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trained bundle's gallery features come from the pixels its queries will have (the longer side for the
    default network), not the shorter side its fine-tuning crops need."""
    seen: list[tuple[int, str]] = []

    def embed(_client, _embedder, objects, **kw) -> Embedded:
        seen.append((kw["min_side"], kw["fit"]))
        return Embedded(np.ones((len(objects), 3), np.float32), list(range(len(objects))))

    monkeypatch.setattr(service, "embed_objects", embed)
    service.cached_features(None, None, [("photos", "users/alice/a.jpg")], cache_dir=None, min_side=384, fit="long")
    assert seen == [(384, "long")]
