"""The batch form of the recognize step: photos drawn here with Pillow, a recognizer that records its calls.

What matters for micro-batching: every decodable photo goes into ONE recognizer call, a bad photo fails alone
and keeps its place, and each outcome says how many photos its call held.
"""

from __future__ import annotations

import io
import threading
import uuid

import pytest
from PIL import Image

from shared.errors import PermanentError, ServiceUnavailable
from shared.imaging import DecodedPhoto
from shared.photos import recognize
from shared.photos.recognize import FetchedPhoto, PhotoRef, recognize_fetched
from shared.recognition.outcome import LandmarkMatch, RecognitionOutcome

MIN_SIDE = 64


def jpeg(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def ref(name: str) -> PhotoRef:
    return PhotoRef(uuid.uuid4(), "photos", f"users/u/{name}", "etag")


class RecordingRecognizer:
    """Says "landmark <width>" for each photo, so answers can be traced back to their photo."""

    version = "test"
    min_side = MIN_SIDE
    fit = "short"

    def __init__(self) -> None:
        self.calls: list[list[DecodedPhoto]] = []

    def recognize_photos(self, photos: list[DecodedPhoto]) -> list[list[LandmarkMatch]]:
        self.calls.append(list(photos))
        return [[LandmarkMatch(f"w{p.meta.width}", 0.9, "global+verified", True)] for p in photos]


class SceneRecognizer(RecordingRecognizer):
    def recognize_photos_with_scenes(
        self, photos: list[DecodedPhoto]
    ) -> list[tuple[list[LandmarkMatch], dict[str, float]]]:
        return [(matches, {"architecture": 0.7}) for matches in self.recognize_photos(photos)]


@pytest.mark.parametrize("threads", [1, 4])
def test_good_photos_share_one_call_and_a_bad_one_fails_alone_in_its_place(threads: int) -> None:
    refs = [ref("a.jpg"), ref("corrupt.jpg"), ref("b.jpg"), ref("gone.jpg"), ref("c.jpg"), ref("offline.jpg")]
    refs.append(ref("odd.jpg"))
    unreachable = ServiceUnavailable("S3 server at 127.0.0.1:1 is unavailable")
    unexpected = RuntimeError("S3 answered 500 InternalError")
    fetched: list[FetchedPhoto | Exception] = [
        FetchedPhoto(jpeg((200, 100), (200, 30, 30)), 1.0),
        FetchedPhoto(b"hello, not a photo", 1.0),
        FetchedPhoto(jpeg((120, 160), (30, 200, 30)), 2.0),
        PermanentError("object_missing", "s3://photos/users/u/gone.jpg: no such key"),
        FetchedPhoto(jpeg((300, 300), (30, 30, 200)), 3.0),
        unreachable,
        unexpected,
    ]
    recognizer = RecordingRecognizer()

    results = recognize_fetched(recognizer, refs, fetched, max_pixels=10_000_000, threads=threads)

    assert len(recognizer.calls) == 1 and len(recognizer.calls[0]) == 3
    assert len(results) == len(refs)
    good = [results[i] for i in (0, 2, 4)]
    assert all(isinstance(r, RecognitionOutcome) for r in good)
    assert [r.matches[0].landmark for r in good] == ["w200", "w120", "w300"]  # answers stay with their photo
    assert [r.meta["batch_size"] for r in good] == [3, 3, 3]
    assert [r.timings_ms["fetch"] for r in good] == [1.0, 2.0, 3.0]
    for r in good:
        assert {"fetch", "decode", "recognize", "recognize_batch"} <= set(r.timings_ms)
        assert r.timings_ms["recognize"] * 3 == pytest.approx(r.timings_ms["recognize_batch"])  # shared out per photo
    corrupt = results[1]
    assert isinstance(corrupt, PermanentError) and corrupt.reason == "not_an_image"
    assert "users/u/corrupt.jpg" in str(corrupt) and corrupt.__cause__ is not None
    assert isinstance(results[3], PermanentError) and results[3].reason == "object_missing"
    assert results[5] is unreachable  # transient: the caller retries that photo alone
    assert results[6] is unexpected  # neither kind: still that photo's alone


def test_scene_tags_come_from_the_same_call() -> None:
    recognizer = SceneRecognizer()
    fetched = [FetchedPhoto(jpeg((100, 100), (90, 90, 90)), 0.5), FetchedPhoto(jpeg((100, 80), (10, 90, 90)), 0.5)]

    results = recognize_fetched(recognizer, [ref("a.jpg"), ref("b.jpg")], fetched, max_pixels=10_000_000)

    assert len(recognizer.calls) == 1
    assert all(isinstance(r, RecognitionOutcome) and r.scenes == {"architecture": 0.7} for r in results)


def test_a_batch_of_only_bad_photos_never_calls_the_recognizer() -> None:
    recognizer = RecordingRecognizer()
    fetched = [FetchedPhoto(b"", 0.1), PermanentError("too_large", "s3://photos/big: larger than 10 bytes")]

    results = recognize_fetched(recognizer, [ref("empty.jpg"), ref("big.jpg")], fetched, max_pixels=10_000_000)

    assert recognizer.calls == []
    assert [r.reason for r in results if isinstance(r, PermanentError)] == ["empty", "too_large"]


def test_a_single_photo_is_a_batch_of_one() -> None:
    recognizer = RecordingRecognizer()

    [result] = recognize_fetched(
        recognizer, [ref("a.jpg")], [FetchedPhoto(jpeg((90, 90), (1, 2, 3)), 0.1)], max_pixels=10_000_000
    )

    assert isinstance(result, RecognitionOutcome)
    assert result.meta["batch_size"] == 1 and result.to_json()["meta"]["batch_size"] == 1
    assert result.timings_ms["recognize"] == result.timings_ms["recognize_batch"]


def test_a_gpu_workers_batch_is_fetched_and_decoded_on_several_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each photo is fetched and decoded on one of the threads, answers stay in order, and a photo whose fetch
    raised keeps its error in its place."""
    objects = {f"users/u/{i}.jpg": jpeg((100 + i, 80), (i, 2 * i, 3 * i)) for i in range(12)}
    fetched_on: list[str] = []
    decoded_on: list[str] = []
    real_decode = recognize.decode_photo

    def fetch(_client: object, photo: PhotoRef, *, max_bytes: int) -> FetchedPhoto:
        fetched_on.append(threading.current_thread().name)
        if photo.key.endswith("/5.jpg"):
            raise ServiceUnavailable("S3 restarting")
        return FetchedPhoto(objects[photo.key], 0.1)

    def decode(data: bytes, **kwargs: int) -> DecodedPhoto:
        decoded_on.append(threading.current_thread().name)
        return real_decode(data, **kwargs)

    monkeypatch.setattr(recognize, "fetch_photo", fetch)
    monkeypatch.setattr(recognize, "decode_photo", decode)
    recognizer = RecordingRecognizer()
    refs = [ref(f"{i}.jpg") for i in range(12)]

    results = recognize.recognize_objects(None, recognizer, refs, max_bytes=10**6, max_pixels=10**7, threads=4)  # type: ignore[arg-type]

    assert len(recognizer.calls) == 1 and len(recognizer.calls[0]) == 11
    assert isinstance(results[5], ServiceUnavailable)
    answers = [r.matches[0].landmark for i, r in enumerate(results) if i != 5]  # type: ignore[union-attr]
    assert answers == [f"w{100 + i}" for i in range(12) if i != 5]
    assert len(set(fetched_on)) > 1 and all(name.startswith("decode") for name in fetched_on + decoded_on)
