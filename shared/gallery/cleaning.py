"""Gallery cleaning, as in the Mail.ru pipeline: a photo far from its landmark's references is rejected.

Each candidate photo of a landmark (roles ``train`` and ``candidate``) gets its mean cosine distance to the
landmark's reference embeddings as ``cleaning_score``; above ``max_distance`` it becomes ``rejected``, otherwise
``train`` (a candidate is accepted). References are the hand-picked ``reference`` photos; a landmark without any
uses the ``n`` train photos closest to the mean of its train photos (as
:func:`shared.recognition.build.pick_references` does), and a landmark with neither is left alone: candidates
alone are no anchor. Objects are never deleted; embedding runs outside any transaction, and a row whose role
changed meanwhile (say, `refs set`) is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from minio import Minio
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import GalleryPhoto, GalleryRole, Landmark
from shared.db.session import session_scope
from shared.gallery import mining
from shared.gallery.catalog import UnknownLandmark
from shared.imaging.batches import embed_objects
from shared.imaging.decode import Fit, fit_for_resize
from shared.index import l2_normalize
from shared.recognition.build import pick_references
from shared.recognition.recognizer import EmbedsImages
from shared.settings import RecognitionSettings, Settings

HAND_PICKED = "hand-picked"
SCORED_ROLES = (GalleryRole.train, GalleryRole.candidate)


def mean_distances(embeddings: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Per photo, the mean of (1 - cosine similarity) to every reference: 0 identical, 1 unrelated."""
    x, r = l2_normalize(np.asarray(embeddings, np.float32)), l2_normalize(np.asarray(references, np.float32))
    return (1.0 - x @ r.T).mean(axis=1)


def auto_references(embeddings: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` photos closest to the mean embedding: the landmark's most typical views."""
    refs, _ = pick_references(embeddings, np.zeros(len(embeddings), dtype=np.int64), n)
    return refs


def decide_roles(scores: np.ndarray, max_distance: float) -> list[GalleryRole]:
    """``rejected`` above the threshold, ``train`` at or below it."""
    return [GalleryRole.rejected if s > max_distance else GalleryRole.train for s in np.asarray(scores)]


@dataclass
class LandmarkCleaning:
    slug: str
    name: str
    references: int
    reference_source: str  # hand-picked | auto (...) | none (...)
    kept: int = 0  # train after cleaning
    rejected: int = 0
    accepted: int = 0  # candidates that became train (counted in kept)
    restored: int = 0  # rejected photos back to train (only when re-checking rejected ones)
    failed: int = 0  # photos that could not be fetched or decoded: left as they were
    left: int = 0  # photos not judged (no references, or their role changed while embedding)


@dataclass
class CleaningReport:
    max_distance: float
    landmarks: list[LandmarkCleaning] = field(default_factory=list)
    withdrawn: int = 0  # mined rows removed: photo deleted or owner no longer sharing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def kept(self) -> int:
        return sum(lm.kept for lm in self.landmarks)

    @property
    def rejected(self) -> int:
        return sum(lm.rejected for lm in self.landmarks)


def _rows(session: Session, landmark_id: int, roles: Sequence[GalleryRole]) -> list[tuple[int, str, str, GalleryRole]]:
    query = (
        select(GalleryPhoto.id, GalleryPhoto.bucket, GalleryPhoto.key, GalleryPhoto.role)
        .where(GalleryPhoto.landmark_id == landmark_id, GalleryPhoto.role.in_(roles), mining.may_stay())
        .order_by(GalleryPhoto.id)
    )
    return [(i, b, k, r) for i, b, k, r in session.execute(query)]


def clean_landmark(
    factory: sessionmaker[Session],
    client: Minio,
    embedder: EmbedsImages,
    landmark: tuple[int, str, str],
    *,
    max_distance: float,
    min_side: int,
    fit: Fit = "short",
    n_auto_references: int = 5,
    include_rejected: bool = False,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> LandmarkCleaning:
    """Score and re-role one landmark's photos (``landmark``: id, slug, name); the rule is the module's."""
    landmark_id, slug, name = landmark
    judged = (*SCORED_ROLES, GalleryRole.rejected) if include_rejected else SCORED_ROLES
    with session_scope(factory) as session:
        rows = _rows(session, landmark_id, (GalleryRole.reference, *judged))
    objects = [(b, k) for _, b, k, _ in rows]
    embedded = embed_objects(
        client, embedder, objects, min_side=min_side, fit=fit, batch_size=batch_size, progress=progress
    )
    roles = [rows[i][3] for i in embedded.ok]
    is_ref = np.array([r == GalleryRole.reference for r in roles], dtype=bool)
    pool = [i for i, r in zip(embedded.ok, roles, strict=True) if r != GalleryRole.reference]
    vectors = embedded.embeddings[~is_ref] if len(roles) else embedded.embeddings
    is_train = np.array([rows[i][3] == GalleryRole.train for i in pool], dtype=bool)
    if is_ref.any():
        references, source = embedded.embeddings[is_ref], HAND_PICKED
    elif is_train.any():
        references = auto_references(vectors[is_train], n_auto_references)
        source = f"auto (the {len(references)} train photos closest to their mean)"
    else:
        references, source = np.zeros((0, 0), np.float32), "none (no references, no train photos)"
    result = LandmarkCleaning(slug, name, len(references), source, failed=len(embedded.failed))
    if not len(references):
        result.left = len(pool)
        return result
    scores = mean_distances(vectors, references)
    with session_scope(factory) as session:
        for i, score, new in zip(pool, scores, decide_roles(scores, max_distance), strict=True):
            photo_id, old = rows[i][0], rows[i][3]
            changed = session.execute(
                update(GalleryPhoto)
                .where(GalleryPhoto.id == photo_id, GalleryPhoto.role == old)
                .values(role=new, cleaning_score=float(score))
            ).rowcount
            if not changed:
                result.left += 1
            elif new == GalleryRole.rejected:
                result.rejected += 1
            else:
                result.kept += 1
                result.accepted += int(old == GalleryRole.candidate)
                result.restored += int(old == GalleryRole.rejected)
    return result


def clean_gallery(
    factory: sessionmaker[Session],
    client: Minio,
    embedder: EmbedsImages,
    *,
    max_distance: float,
    min_side: int,
    fit: Fit = "short",
    n_auto_references: int = 5,
    landmark: str | None = None,
    include_rejected: bool = False,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> CleaningReport:
    """Clean every active landmark (or the one with slug ``landmark``), after withdrawing mined photos whose
    owner stopped sharing or deleted them."""
    report = CleaningReport(max_distance)
    with session_scope(factory) as session:
        report.withdrawn = mining.withdraw(session)
        query = select(Landmark.id, Landmark.slug, Landmark.name)
        query = query.where(Landmark.slug == landmark) if landmark else query.where(Landmark.active.is_(True))
        landmarks = [(i, s, n) for i, s, n in session.execute(query.order_by(Landmark.slug))]
    if landmark is not None and not landmarks:
        raise UnknownLandmark(f"no landmark {landmark!r}")
    for lm in landmarks:
        result = clean_landmark(
            factory,
            client,
            embedder,
            lm,
            max_distance=max_distance,
            min_side=min_side,
            fit=fit,
            n_auto_references=n_auto_references,
            include_rejected=include_rejected,
            batch_size=batch_size,
            progress=progress,
        )
        if landmark or result.kept + result.rejected + result.failed + result.left:
            report.landmarks.append(result)  # landmarks with nothing to judge stay out of the report
    return report


def embedder_for(rec: RecognitionSettings) -> tuple[EmbedsImages, int, Fit]:
    """The backbone embedder of the settings (what `model build` embeds with) and its decode size and side, made
    once per process by the model factory; the network itself loads on first use."""
    from shared.model.factory import decode_side, embedder_from_settings

    embedder = embedder_from_settings(rec)
    return embedder, decode_side(embedder.config), fit_for_resize(embedder.config.resize, embedder.config.decode_fit)


def run_cleaning(
    settings: Settings,
    factory: sessionmaker[Session],
    client: Minio,
    *,
    landmark: str | None = None,
    include_rejected: bool = False,
    progress: Callable[[int], None] | None = None,
) -> CleaningReport:
    """What the task and `landmarks gallery clean --wait` both run, with the settings' threshold and model."""
    embedder, min_side, fit = embedder_for(settings.recognition)
    return clean_gallery(
        factory,
        client,
        embedder,
        max_distance=settings.gallery.cleaning_max_distance,
        min_side=min_side,
        fit=fit,
        n_auto_references=settings.gallery.auto_references,
        landmark=landmark,
        include_rejected=include_rejected,
        batch_size=settings.recognition.batch_size,
        progress=progress,
    )
