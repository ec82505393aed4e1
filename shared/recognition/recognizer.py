"""The object workers hold: a bundle's indexes plus an embedder, with per-stage methods for timing.

``recognize`` = ``embed`` + ``decide``; the stages are public so callers can time decode, embed, search and verify
separately. The embedder is anything with ``embed(list[PIL.Image]) -> N x D float32``; :meth:`from_bundle` builds
the torch one lazily (the network itself loads on first use, once per process).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from shared.index import LandmarkIndex, l2_normalize
from shared.recognition.bundle import Bundle
from shared.recognition.decision import LandmarkGeo, RecognitionResult, decide

if TYPE_CHECKING:
    from shared.imaging import DecodedPhoto


class EmbedsImages(Protocol):
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray: ...


class Recognizer:
    def __init__(self, bundle: Bundle, embedder: EmbedsImages, *, min_side: int | None = None) -> None:
        self.bundle = bundle
        self.embedder = embedder
        self.version = bundle.version
        # Decode no smaller than the network input (the largest test-time scale included).
        scales = bundle.model.get("scales") or [1.0]
        self.min_side = min_side or int(round(int(bundle.model.get("image_size", 260)) * max(scales)))
        self.centroids = LandmarkIndex(bundle.centroids, bundle.centroid_landmarks)
        self.references = LandmarkIndex(bundle.references, bundle.reference_landmarks)
        lms = bundle.landmarks
        self.geo = LandmarkGeo(
            ids=np.array([lm.id for lm in lms], dtype=np.int64),
            lats=np.array([np.nan if lm.lat is None else lm.lat for lm in lms], dtype=np.float64),
            lons=np.array([np.nan if lm.lon is None else lm.lon for lm in lms], dtype=np.float64),
        )

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        *,
        device: str = "auto",
        batch_size: int = 16,
        weights_path: Path | None = None,
        threads: int | None = None,
    ) -> Recognizer:
        """A recognizer with the torch embedder the bundle describes (loaded lazily on first embed)."""
        from shared.model import Embedder, EmbedderConfig

        embedder = Embedder(
            EmbedderConfig.from_dict(bundle.model),
            device=device,
            batch_size=batch_size,
            weights_path=weights_path,
            head_state=bundle.head_state,
            threads=threads,
        )
        return cls(bundle, embedder)

    def embed(self, photos: Sequence[DecodedPhoto | Image.Image]) -> np.ndarray:
        images = [p if isinstance(p, Image.Image) else p.image for p in photos]
        return l2_normalize(self.embedder.embed(images))

    def decide(
        self, embeddings: np.ndarray, gps_list: Sequence[tuple[float, float] | None] | None = None
    ) -> list[RecognitionResult]:
        gps_list = gps_list if gps_list is not None else [None] * len(embeddings)
        return [
            decide(
                e,
                g,
                centroids=self.centroids,
                references=self.references,
                geo=self.geo,
                thresholds=self.bundle.thresholds,
                params=self.bundle.decision,
                model_version=self.version,
            )
            for e, g in zip(embeddings, gps_list, strict=True)
        ]

    def recognize(self, photos: Sequence[DecodedPhoto]) -> list[RecognitionResult]:
        """Batched: one embedding pass for all photos, then one decision each (GPS from the photo's EXIF)."""
        if not photos:
            return []
        return self.decide(self.embed(photos), [p.meta.gps for p in photos])

    def recognize_photos(self, photos: list[DecodedPhoto]) -> list[list[Any]]:
        """``shared.pipeline.PhotoRecognizer``: per photo, its matches by slug (one "none" entry when none)."""
        from shared.pipeline import LandmarkMatch

        out = []
        for r in self.recognize(photos):
            if not r.matches:
                out.append([LandmarkMatch(None, float(r.score), r.method, False)])
                continue
            out.append(
                [
                    LandmarkMatch(self.slug(m.landmark_id), float(m.score), m.method, m.verification_score is not None)
                    for m in r.matches
                ]
            )
        return out

    def slug(self, landmark_id: int | None) -> str | None:
        return None if landmark_id is None else self.bundle.landmark(landmark_id).slug

    def describe(self, result: RecognitionResult) -> dict[str, Any]:
        """JSON-friendly view of a result with the landmark's name and place."""
        lm = self.bundle.landmarks_by_id.get(result.landmark_id) if result.landmark_id is not None else None
        ru = result.runner_up
        return {
            "landmark": lm.slug if lm else None,
            "name": lm.name if lm else None,
            "city": lm.city if lm else None,
            "country": lm.country if lm else None,
            "score": round(float(result.score), 4),
            "verification_score": None if result.verification_score is None else round(result.verification_score, 4),
            "method": result.method,
            "model_version": result.model_version,
            "runner_up": None if ru is None else {"landmark": self.slug(ru[0]), "score": round(float(ru[1]), 4)},
        }
