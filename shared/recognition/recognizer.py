"""The object workers hold: a bundle's indexes plus an embedder, with per-stage methods for timing.

``recognize`` = ``embed`` + ``decide``; the stages are public so callers can time decode, embed, search and verify
separately. The embedder is anything with ``embed(list[PIL.Image]) -> N x D float32``; :meth:`from_bundle` builds
the bundle's network lazily (the network itself loads on first use, once per process).

Scene tags come from the same forward pass when the embedder also has ``embed_with_logits`` (the backbone's
ImageNet classifier); their landmark-like mass feeds the bundle's scene prior, when it has one.

A trained bundle's landmark-presence gate (``model["presence_gate"]``) is applied in :meth:`Recognizer.decide`, so
workers, ``landmarks recognize`` and the evaluator all get the same gated decision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from shared.imaging.batches import EmbedsImages  # what the recognizer needs of an embedder
from shared.imaging.decode import fit_for_resize
from shared.index import LandmarkIndex, l2_normalize
from shared.recognition.bundle import Bundle, BundleIntegrityError
from shared.recognition.decision import (
    METHOD_GEO,
    LandmarkGeo,
    PresenceGate,
    RecognitionResult,
    Thresholds,
    apply_gate,
    apply_open_set,
    decide,
)
from shared.recognition.open_set import FEATURES, OpenSetFeatures
from shared.scenes import SceneMapping, landmark_mass, load_mapping, scene_tags

if TYPE_CHECKING:
    from shared.imaging import DecodedPhoto
    from shared.settings import RecognitionSettings


@runtime_checkable
class ClassifiesImages(Protocol):
    """An embedder that also gives ImageNet logits from the same forward pass (``shared.model.Embedder``)."""

    @property
    def has_classifier(self) -> bool: ...

    def embed_with_logits(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]: ...


class Recognizer:
    def __init__(
        self,
        bundle: Bundle,
        embedder: EmbedsImages,
        *,
        min_side: int | None = None,
        scene_mapping: SceneMapping | None = None,
    ) -> None:
        self.bundle = bundle
        self.embedder = embedder
        self.version = bundle.version
        self.scenes = bundle.scenes
        self.scene_mapping = scene_mapping or load_mapping()
        prior = bundle.scenes.prior
        self.prior_thresholds = Thresholds.from_dict(prior.thresholds) if prior.thresholds else bundle.thresholds
        # Decode no smaller than the network input (the largest test-time scale included), on the side the bundle's
        # decode_fit names (what model build and eval decoded the gallery on; the shorter side by default).
        scales = bundle.model.get("scales") or [1.0]
        self.min_side = min_side or int(round(int(bundle.model.get("image_size", 260)) * max(scales)))
        self.fit = fit_for_resize(str(bundle.model.get("resize", "long")), str(bundle.model.get("decode_fit", "short")))
        self.centroids = LandmarkIndex(bundle.centroids, bundle.centroid_landmarks)
        self.references = LandmarkIndex(bundle.references, bundle.reference_landmarks)
        self.gate = presence_gate(bundle)
        self.open_set = bundle.open_set
        self._open_set_features = (
            None
            if bundle.open_set is None
            else OpenSetFeatures(
                self.references, bundle.open_set.reference_density, bundle.open_set.negatives, bundle.open_set.k
            )
        )
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
        rec: RecognitionSettings | None = None,
        *,
        threads: int | None = None,
        batch_size: int | None = None,
        scenes: bool = True,
        preprocess_threads: int = 1,
        **overrides: Any,
    ) -> Recognizer:
        """A recognizer with the bundle's network on the settings' device and engine (``overrides``: settings
        fields such as ``device="cpu"``), loaded lazily on first embed; ``scenes`` also asks for the backbone's
        classifier for scene tags and the prior."""
        from shared.model.factory import bundle_embedder
        from shared.settings import RecognitionSettings

        rec = (rec or RecognitionSettings()).model_copy(update=overrides)
        embedder = bundle_embedder(
            rec,
            bundle.model,
            head_state=bundle.head_state,
            backbone_state=bundle.backbone_state,
            onnx_path=bundle.network_onnx,
            threads=threads,
            batch_size=batch_size,
            classifier=scenes,
            preprocess_threads=preprocess_threads,
        )
        return cls(bundle, embedder)

    def embed(self, photos: Sequence[DecodedPhoto | Image.Image]) -> np.ndarray:
        images = [p if isinstance(p, Image.Image) else p.image for p in photos]
        return l2_normalize(self.embedder.embed(images))

    def embed_with_logits(self, photos: Sequence[DecodedPhoto | Image.Image]) -> tuple[np.ndarray, np.ndarray | None]:
        """Embeddings and, when the embedder has a classifier, ImageNet logits from the same forward pass."""
        images = [p if isinstance(p, Image.Image) else p.image for p in photos]
        if isinstance(self.embedder, ClassifiesImages) and self.embedder.has_classifier:
            e, logits = self.embedder.embed_with_logits(images)
            return l2_normalize(e), logits
        return l2_normalize(self.embedder.embed(images)), None

    def decide(
        self,
        embeddings: np.ndarray,
        gps_list: Sequence[tuple[float, float] | None] | None = None,
        masses: np.ndarray | None = None,
    ) -> list[RecognitionResult]:
        """One decision per embedding. ``masses`` (landmark-like scene mass per photo) applies the bundle's scene
        prior when it has one; without them the decision is the plain one. The bundle's presence gate, when it
        has one, vetoes non-GPS acceptances (see :func:`shared.recognition.decision.apply_gate`)."""
        gps_list = gps_list if gps_list is not None else [None] * len(embeddings)
        if masses is None or not self.scenes.prior.enabled:
            per_photo = [self.bundle.thresholds] * len(embeddings)
        else:
            per_photo = [_raised(self.prior_thresholds, float(p)) for p in self.scenes.prior.penalty(masses)]
        results = [
            decide(
                e,
                g,
                centroids=self.centroids,
                references=self.references,
                geo=self.geo,
                thresholds=t,
                params=self.bundle.decision,
                model_version=self.version,
            )
            for e, g, t in zip(embeddings, gps_list, per_photo, strict=True)
        ]
        threshold = None if self.gate is None else self.gate.threshold
        if self.gate is not None and threshold is not None and results:
            logits = self.gate.logits(embeddings)
            results = [apply_gate(r, float(x), threshold) for r, x in zip(results, logits, strict=True)]
        return self._apply_open_set(embeddings, results)

    def _apply_open_set(self, embeddings: np.ndarray, results: list[RecognitionResult]) -> list[RecognitionResult]:
        """Step 5 of the decision: acceptances without GPS must pass the open-set score, when the model has one
        (photos it turned away get their score too, for explanations and the evaluator's curve)."""
        if self.open_set is None or self._open_set_features is None:
            return results
        todo = [i for i, r in enumerate(results) if r.method != METHOD_GEO and _candidates(r) is not None]
        if not todo:
            return results
        best = [_candidates(results[i])[0] for i in todo]  # type: ignore[index]
        runner = [_candidates(results[i])[1] for i in todo]  # type: ignore[index]
        features = self._open_set_features.compute(np.asarray(embeddings)[todo], best, runner)  # type: ignore[arg-type]
        scores = self.open_set.score(features)
        out = list(results)
        for i, f, s in zip(todo, features, scores, strict=True):
            named = {name: round(float(v), 4) for name, v in zip(FEATURES, f, strict=True)}
            out[i] = apply_open_set(results[i], float(s), self.open_set.threshold, named)
        return out

    def recognize(self, photos: Sequence[DecodedPhoto]) -> list[RecognitionResult]:
        """Batched: one embedding pass for all photos, then one decision each (GPS from the photo's EXIF)."""
        return [r for r, _ in self.recognize_with_scenes(photos)]

    def recognize_with_scenes(self, photos: Sequence[DecodedPhoto]) -> list[tuple[RecognitionResult, dict[str, float]]]:
        """Like :meth:`recognize`, plus each photo's scene tags (empty without a classifier)."""
        if not photos:
            return []
        embeddings, logits = self.embed_with_logits(photos)
        if logits is None:
            return [(r, {}) for r in self.decide(embeddings, [p.meta.gps for p in photos])]
        masses = landmark_mass(logits, self.scene_mapping, self.scenes.prior.labels)
        results = self.decide(embeddings, [p.meta.gps for p in photos], masses)
        return list(zip(results, scene_tags(logits, self.scene_mapping, self.scenes.threshold), strict=True))

    def recognize_photos(self, photos: list[DecodedPhoto]) -> list[list[Any]]:
        """``shared.recognition.outcome.PhotoRecognizer``: per photo, its matches by slug (one "none" when none)."""
        return [matches for matches, _ in self.recognize_photos_with_scenes(photos)]

    def recognize_photos_with_scenes(self, photos: list[DecodedPhoto]) -> list[tuple[list[Any], dict[str, float]]]:
        """``shared.recognition.outcome.TagsScenes``: per photo, its matches by slug and its scene tags."""
        from shared.recognition.outcome import LandmarkMatch

        out: list[tuple[list[Any], dict[str, float]]] = []
        for r, tags in self.recognize_with_scenes(photos):
            if not r.matches:
                out.append(([LandmarkMatch(None, float(r.score), r.method, False)], tags))
                continue
            matches = [
                LandmarkMatch(self.slug(m.landmark_id), float(m.score), m.method, m.verification_score is not None)
                for m in r.matches
            ]
            out.append((matches, tags))
        return out

    def slug(self, landmark_id: int | None) -> str | None:
        return None if landmark_id is None else self.bundle.landmark(landmark_id).slug

    def describe(self, result: RecognitionResult) -> dict[str, Any]:
        """JSON-friendly view of a result with the landmark's name and place."""
        lm = self.bundle.landmarks_by_id.get(result.landmark_id) if result.landmark_id is not None else None
        ru = result.runner_up
        out = {
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
        if result.open_set_score is not None and self.open_set is not None:
            out["open_set"] = {
                "features": result.open_set_features or {},
                "score": round(result.open_set_score, 4),
                "threshold": round(self.open_set.threshold, 4),
                "vetoed": result.open_set_vetoed,
            }
        if result.gate_logit is not None and self.gate is not None:
            out["gate"] = {
                "logit": round(result.gate_logit, 4),
                "threshold": None if self.gate.threshold is None else round(self.gate.threshold, 4),
                "vetoed": result.gate_vetoed,
            }
        return out


def presence_gate(bundle: Bundle) -> PresenceGate | None:
    """The bundle's calibrated presence gate, or None (untrained bundles have none; an uncalibrated one is unused).

    A gate whose weight does not fit the embedding is refused: it belongs to another model."""
    data = bundle.model.get("presence_gate")
    if not data:
        return None
    gate = PresenceGate.from_dict(data)
    if gate.threshold is None:
        return None
    if gate.weight.shape != (bundle.embedding_dim,):
        raise BundleIntegrityError(
            f"presence gate of {bundle.version} has {gate.weight.shape} weights for {bundle.embedding_dim}-d embeddings"
        )
    return gate


def _candidates(result: RecognitionResult) -> tuple[int, int | None] | None:
    """The (best, runner-up) landmark ids a decision weighed: the match and its runner-up, or the best rejected
    candidate and the one behind it; None when there was no candidate."""
    if result.recognized:
        assert result.landmark_id is not None
        return result.landmark_id, result.runner_up[0] if result.runner_up else None
    if result.runner_up is None:
        return None
    return result.runner_up[0], result.second[0] if result.second else None


def _raised(t: Thresholds, by: float) -> Thresholds:
    """Thresholds ``by`` higher (the scene prior's penalty), except the centroid gate and the margin."""
    if by == 0:
        return t
    return dataclasses.replace(
        t,
        verification=t.verification + by,
        geo=t.geo + by,
        per_landmark={k: v + by for k, v in t.per_landmark.items()},
    )
