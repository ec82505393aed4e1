"""What recognition answers for a photo, in the shape that travels between queues, and what the upload
steps need of a loaded model version: the contract between :mod:`shared.recognition` and :mod:`shared.photos`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from shared.imaging import DecodedPhoto, Fit


@dataclass
class LandmarkMatch:
    """One decision, JSON-serialisable so it travels between queues (landmark by slug, None = no landmark)."""

    landmark: str | None
    score: float
    method: str
    verified: bool = False


@dataclass
class RecognitionOutcome:
    matches: list[LandmarkMatch]
    meta: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)
    scenes: dict[str, float] = field(default_factory=dict)  # scene label -> score (``shared.scenes``)

    def to_json(self) -> dict[str, Any]:
        return {
            "matches": [asdict(m) for m in self.matches],
            "meta": self.meta,
            "timings_ms": self.timings_ms,
            "scenes": self.scenes,
        }


class PhotoRecognizer(Protocol):
    """What the pipeline needs of a loaded model version (see ``shared.recognition``)."""

    version: str
    min_side: int
    fit: Fit  # the side min_side is measured on (shared.imaging.decode_photo's ``fit``)

    def recognize_photos(self, photos: list[DecodedPhoto]) -> list[list[LandmarkMatch]]: ...


@runtime_checkable
class TagsScenes(Protocol):
    """A recognizer that also tags scenes from the same forward pass (``shared.recognition.Recognizer``)."""

    def recognize_photos_with_scenes(
        self, photos: list[DecodedPhoto]
    ) -> list[tuple[list[LandmarkMatch], dict[str, float]]]: ...
