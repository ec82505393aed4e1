"""Centroids + references + calibration -> :class:`Bundle`; shared by the evaluator and `landmarks model build`.

References: when no hand-picked reference photos exist, a landmark's references are its gallery photos (up to
``max_references``, those closest to the landmark's mean first), so verification is a kNN vote over real photos
rather than a second look at the centroid. (Five photos closest to the mean were tried first: they mostly repeat
the centroid and cost recall without removing wrong answers; see the evaluator figures in the project notes.)

Thresholds (all stored with the model):

- ``verification``: rejects ``rejection`` (0.99) of the known non-landmark photos' verification scores;
- ``per_landmark``: each landmark's own verification threshold, rejecting ``landmark_rejection`` (all) of the
  non-landmarks' verification scores against that landmark (landmarks differ in how generic they look: a
  fixed global bar is too low for some and too high for others);
- ``global_score``: the centroid gate, rejects ``global_rejection`` (0.9) of their best centroid scores;
- ``geo``: the GPS path's centroid threshold, rejects ``geo_rejection`` (0.9) of them (location is evidence);
- ``margin``: rejects ``margin_share`` (0.5) of the gallery's own wrong-landmark answers, found leave-one-out
  (each gallery photo decided against the rest), so look-alike landmarks are told apart without test data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.index import LandmarkIndex, build_centroids, l2_normalize
from shared.recognition.bundle import Bundle, LandmarkInfo
from shared.recognition.calibration import calibrate_threshold, wrong_answer_margin
from shared.recognition.decision import DecisionParams, Thresholds
from shared.recognition.open_set import fit_open_set
from shared.recognition.whitening import Whitening, WhiteningOptions, learn_whitening, whitening_head

SELF_MATCH = 1.0 - 1e-5  # a reference this similar to the query is the query itself (leave-one-out)


@dataclass(frozen=True)
class CandidateScores:
    """Per photo, what :func:`shared.recognition.decision.decide` tests without GPS."""

    best_ids: np.ndarray  # best landmark after verification
    centroid: np.ndarray  # best centroid score over all landmarks (the gate)
    verification: np.ndarray  # best landmark's verification score
    second: np.ndarray  # runner-up's verification score
    landmark_ids: np.ndarray  # columns of ``all_verification``
    all_verification: np.ndarray  # N x L verification score against every landmark
    runner_ids: np.ndarray  # the runner-up landmark within the shortlist (-1: none)

    @property
    def margin(self) -> np.ndarray:
        return self.verification - self.second


def candidate_scores(
    embeddings: np.ndarray,
    centroids: LandmarkIndex,
    references: LandmarkIndex,
    params: DecisionParams,
    *,
    leave_one_out: bool = False,
    chunk: int = 1024,
) -> CandidateScores:
    """Vectorised twin of ``decide`` (no GPS) for many photos; ``leave_one_out`` ignores references identical
    to the query (for gallery photos scored against their own gallery)."""
    x = l2_normalize(embeddings)
    ref_ids = set(np.unique(references.labels).tolist())
    cent_ids = np.unique(centroids.labels)
    parts: list[list[np.ndarray]] = [[], [], [], [], [], []]
    m = max(params.shortlist, params.top_k, 2)
    for start in range(0, len(x), chunk):
        q = x[start : start + chunk]
        sc = q @ centroids.vectors.T
        cent = np.stack([sc[:, centroids.labels == lid].max(axis=1) for lid in cent_ids], axis=1)
        sr = q @ references.vectors.T
        if leave_one_out:
            sr[sr >= SELF_MATCH] = -np.inf
        ver = np.full((len(q), len(cent_ids)), -np.inf, dtype=np.float32)
        for j, lid in enumerate(cent_ids):
            if int(lid) not in ref_ids:
                continue
            s = sr[:, references.labels == lid]
            k = min(params.verification_k, s.shape[1])
            top = -np.partition(-s, k - 1, axis=1)[:, :k]
            with np.errstate(invalid="ignore"):
                ver[:, j] = np.where(np.isfinite(top).all(axis=1), top.mean(axis=1), -np.inf)
        short = np.argsort(-cent, axis=1, kind="stable")[:, :m]
        vs = np.take_along_axis(ver, short, axis=1)
        order = np.argsort(-vs, axis=1, kind="stable")
        rows = np.arange(len(q))
        parts[0].append(cent_ids[short[rows, order[:, 0]]])
        parts[1].append(cent.max(axis=1))
        parts[2].append(vs[rows, order[:, 0]])
        parts[3].append(vs[rows, order[:, 1]] if vs.shape[1] > 1 else np.full(len(q), -np.inf))
        parts[4].append(ver)
        if vs.shape[1] > 1:
            runner = cent_ids[short[rows, order[:, 1]]]
            parts[5].append(np.where(np.isfinite(vs[rows, order[:, 1]]), runner, -1))
        else:
            parts[5].append(np.full(len(q), -1))
    if not parts[0]:
        empty = np.zeros(0, np.float32)
        return CandidateScores(
            np.zeros(0, np.int64),
            empty,
            empty,
            empty,
            cent_ids,
            np.zeros((0, len(cent_ids)), np.float32),
            np.zeros(0, np.int64),
        )
    return CandidateScores(
        np.concatenate(parts[0]).astype(np.int64),
        np.concatenate(parts[1]).astype(np.float32),
        np.concatenate(parts[2]).astype(np.float32),
        np.concatenate(parts[3]).astype(np.float32),
        cent_ids.astype(np.int64),
        np.concatenate(parts[4]).astype(np.float32),
        np.concatenate(parts[5]).astype(np.int64),
    )


def select_references(
    embeddings: np.ndarray, landmark_ids: np.ndarray, max_per_landmark: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Per landmark, up to ``max_per_landmark`` gallery photos, those closest to its mean first."""
    rows = reference_rows(embeddings, landmark_ids, max_per_landmark)
    return l2_normalize(embeddings)[rows], np.asarray(landmark_ids, dtype=np.int64)[rows]


def reference_rows(embeddings: np.ndarray, landmark_ids: np.ndarray, max_per_landmark: int = 200) -> np.ndarray:
    """The gallery rows :func:`select_references` picks, landmark by landmark."""
    x = l2_normalize(embeddings)
    ids = np.asarray(landmark_ids, dtype=np.int64)
    picked = []
    for lid in np.unique(ids):
        rows = np.flatnonzero(ids == lid)
        mean = l2_normalize(x[rows].mean(axis=0, keepdims=True))[0]
        picked.append(rows[np.argsort(-(x[rows] @ mean), kind="stable")[:max_per_landmark]])
    return np.concatenate(picked)


def pick_references(embeddings: np.ndarray, landmark_ids: np.ndarray, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` gallery photos closest to each landmark's mean (a small, typical reference set)."""
    return select_references(embeddings, landmark_ids, n)


def calibrate_thresholds(
    non_landmarks: np.ndarray,
    centroids: LandmarkIndex,
    references: LandmarkIndex,
    params: DecisionParams,
    *,
    gallery: np.ndarray | None = None,
    gallery_landmarks: np.ndarray | None = None,
    rejection: float = 0.99,
    landmark_rejection: float | None = 1.0,
    global_rejection: float = 0.9,
    geo_rejection: float = 0.9,
    margin_share: float = 0.5,
    unknown_landmarks: np.ndarray | None = None,
) -> Thresholds:
    """Thresholds from the non-landmarks (and the gallery, leave-one-out, for the margin); see the module doc.

    ``unknown_landmarks``: the operator's photos of landmarks the gallery does not know; they join the everyday
    photos in each landmark's own threshold only (a landmark with a known look-alike asks for more), not in the
    global ones, which an everyday photo's share sets."""
    s = candidate_scores(non_landmarks, centroids, references, params)
    global_score = calibrate_threshold(s.centroid, global_rejection)
    verification = calibrate_threshold(s.verification, rejection)
    per_landmark: dict[int, float] = {}
    if landmark_rejection:
        columns = s.all_verification
        if unknown_landmarks is not None and len(unknown_landmarks):
            columns = np.concatenate(
                [columns, candidate_scores(unknown_landmarks, centroids, references, params).all_verification]
            )
        for j, lid in enumerate(s.landmark_ids):
            col = columns[:, j]
            if np.isfinite(col).any():
                per_landmark[int(lid)] = calibrate_threshold(col, landmark_rejection)
    thresholds = Thresholds(
        global_score=global_score,
        verification=verification,
        geo=calibrate_threshold(s.centroid, geo_rejection),
        per_landmark=per_landmark,
    )
    margin = 0.0
    if margin_share > 0 and gallery is not None and gallery_landmarks is not None and len(gallery):
        g = candidate_scores(gallery, centroids, references, params, leave_one_out=True)
        passes = np.array(
            [v > thresholds.verification_for(int(b)) for b, v in zip(g.best_ids, g.verification, strict=True)]
        )
        wrong = (g.centroid > global_score) & passes & (g.best_ids != np.asarray(gallery_landmarks))
        margin = wrong_answer_margin(g.margin[wrong], margin_share)
    return Thresholds(
        global_score=global_score,
        verification=verification,
        geo=thresholds.geo,
        margin=margin,
        per_landmark=per_landmark,
    )


def build_bundle_from_embeddings(
    *,
    version: str,
    model: dict[str, Any],
    landmarks: Sequence[LandmarkInfo],
    gallery: np.ndarray,
    gallery_landmarks: np.ndarray,
    non_landmarks: np.ndarray,
    references: np.ndarray | None = None,
    reference_landmarks: np.ndarray | None = None,
    max_references: int = 200,
    distance_threshold: float = 0.6,
    min_cluster_size: int | None = None,
    cluster_fraction: float = 0.1,
    rejection: float = 0.99,
    landmark_rejection: float | None = 1.0,
    global_rejection: float = 0.9,
    geo_rejection: float = 0.9,
    margin_share: float = 0.5,
    decision: DecisionParams | None = None,
    head_state: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    unknown_rejection: float | None = None,
    whitening: WhiteningOptions | None = None,
    unknown_landmarks: np.ndarray | None = None,
) -> Bundle:
    """Cluster the gallery into centroids, choose references, calibrate thresholds on non-landmarks; with
    ``unknown_rejection``, also the open-set score on landmarks left out of the gallery (that share of them is
    turned away; :mod:`shared.recognition.open_set`). With ``whitening``, all of it happens in the space of the
    gallery's supervised whitening (:mod:`shared.recognition.whitening`), which the bundle carries as its head;
    the embeddings given are then the raw ones. ``unknown_landmarks``: the operator's photos of landmarks the
    gallery does not know (landmark-like negatives): they raise the thresholds of the landmarks they resemble and
    join the open-set score's stand-ins."""
    decision = decision or DecisionParams()
    gallery_landmarks = np.asarray(gallery_landmarks, dtype=np.int64)
    learn = None
    if whitening is not None:
        if head_state:
            raise ValueError("a bundle has one head: a trained one or the gallery's whitening, not both")
        raw_gallery, raw_negatives = l2_normalize(gallery), l2_normalize(non_landmarks)
        raw_references = None if references is None else l2_normalize(references)

        def learn(keep: np.ndarray) -> Whitening:
            return learn_whitening(
                raw_gallery[keep], gallery_landmarks[keep], raw_negatives, dim=whitening.dim, shrink=whitening.shrink
            )

        space = learn(np.ones(len(raw_gallery), dtype=bool))
        gallery, non_landmarks = space(raw_gallery), space(raw_negatives)
        raw_unknown = None if unknown_landmarks is None else l2_normalize(unknown_landmarks)
        unknown_landmarks = None if raw_unknown is None else space(raw_unknown)
        references = None if raw_references is None else space(raw_references)
        head_state = whitening_head(space)
        model = {**model, "whitening": {"dim": space.dim, "shrink": whitening.shrink}, "embedding_dim": space.dim}
    gallery = l2_normalize(gallery)
    centroids, centroid_landmarks = build_centroids(
        gallery,
        gallery_landmarks,
        distance_threshold=distance_threshold,
        min_cluster_size=min_cluster_size,
        fraction=cluster_fraction,
    )
    if references is None or reference_landmarks is None or len(references) == 0:
        references, reference_landmarks = select_references(gallery, gallery_landmarks, max_references)
    references = l2_normalize(references)
    reference_landmarks = np.asarray(reference_landmarks, dtype=np.int64)
    thresholds = calibrate_thresholds(
        non_landmarks,
        LandmarkIndex(centroids, centroid_landmarks),
        LandmarkIndex(references, reference_landmarks),
        decision,
        gallery=gallery,
        gallery_landmarks=gallery_landmarks,
        rejection=rejection,
        landmark_rejection=landmark_rejection,
        global_rejection=global_rejection,
        geo_rejection=geo_rejection,
        margin_share=margin_share,
        unknown_landmarks=None if unknown_landmarks is None else l2_normalize(unknown_landmarks),
    )

    def rule(
        negatives: np.ndarray,
        rule_centroids: LandmarkIndex,
        rule_references: LandmarkIndex,
        rule_gallery: np.ndarray,
        rule_gallery_landmarks: np.ndarray,
    ) -> Thresholds:
        """The thresholds this build gives a gallery (for stand-ins, the gallery without their landmark)."""
        return calibrate_thresholds(
            negatives,
            rule_centroids,
            rule_references,
            decision,
            gallery=rule_gallery,
            gallery_landmarks=rule_gallery_landmarks,
            rejection=rejection,
            landmark_rejection=landmark_rejection,
            global_rejection=global_rejection,
            geo_rejection=geo_rejection,
            margin_share=margin_share,
        )

    open_set = None
    if unknown_rejection and learn is None:
        open_set = fit_open_set(
            gallery,
            gallery_landmarks,
            LandmarkIndex(centroids, centroid_landmarks),
            LandmarkIndex(references, reference_landmarks),
            l2_normalize(non_landmarks),
            decision,
            unknown_rejection=unknown_rejection,
            unknown_landmarks=None if unknown_landmarks is None else l2_normalize(unknown_landmarks),
            rule=rule,
        )
    elif unknown_rejection:  # stand-ins scored in spaces learned without them: raw inputs, one centroid a landmark
        if raw_references is not None and reference_landmarks is not None:
            raw_refs, raw_ref_landmarks = raw_references, np.asarray(reference_landmarks, dtype=np.int64)
        else:  # the gallery rows the bundle's references were picked from
            rows = reference_rows(gallery, gallery_landmarks, max_references)
            raw_refs, raw_ref_landmarks = raw_gallery[rows], gallery_landmarks[rows]
        lids = np.unique(gallery_landmarks)
        means = l2_normalize(np.stack([raw_gallery[gallery_landmarks == lid].mean(axis=0) for lid in lids]))
        open_set = fit_open_set(
            raw_gallery,
            gallery_landmarks,
            LandmarkIndex(means, lids),
            LandmarkIndex(raw_refs, raw_ref_landmarks),
            raw_negatives,
            decision,
            unknown_rejection=unknown_rejection,
            learn=learn,
            unknown_landmarks=raw_unknown,
            rule=rule,
        )
    metrics = dict(metrics or {})
    if open_set is not None:  # flat, so `landmarks status` and `model list` show them
        metrics.update({f"open_set_{k}": v for k, v in open_set.metrics.items() if k != "folds"})
    return Bundle(
        version=version,
        model=model,
        thresholds=thresholds,
        landmarks=tuple(landmarks),
        centroids=centroids,
        centroid_landmarks=centroid_landmarks,
        references=references,
        reference_landmarks=reference_landmarks,
        decision=decision,
        metrics=metrics,
        head_state=head_state,
        open_set=open_set,
    )
