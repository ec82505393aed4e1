"""The open-set score of a trained model, fitted on stand-ins the head never saw.

A trained head learns to pull each known landmark's photos together and apart from the rest; scoring a known
landmark's gallery photos as "unknown" stand-ins with that head would make them look far more known than a real
unknown landmark does. The cross-fitting of :mod:`shared.training.fit` folds by photo (every fold's head has seen
every landmark), so its out-of-fold embeddings are no leave-landmarks-out stand-ins. Instead
:func:`shared.recognition.open_set.fit_open_set`'s ``learn`` hook retrains the head without the rows it scores:
each left-out landmark's photos are embedded by a head trained without that landmark (and each fold of known
photos by a head trained without those photos), exactly as an untrained bundle's whitening is relearned.

The decision's own thresholds of the trained model are cross-fitted on the negatives; a head retrained here sees
all negatives, so its thresholds would be in-sample: the score is fitted without the rule (``rule=None``), and its
threshold alone turns away ``unknown_rejection`` of the stand-ins (the rule's own rejections come on top: safer,
not looser).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.index import LandmarkIndex, l2_normalize
from shared.model.head import project
from shared.recognition.build import reference_rows
from shared.recognition.decision import DecisionParams
from shared.recognition.open_set import OpenSetModel, Transform, fit_open_set
from shared.training.trainer import TrainConfig, train_on_features

if TYPE_CHECKING:
    from shared.training.fit import FeatureDataset


def fit_trained_open_set(
    ds: FeatureDataset,
    landmark_ids: Sequence[int] | np.ndarray,
    config: TrainConfig,
    head_state: dict[str, Any] | None,
    decision: DecisionParams,
    *,
    unknown_rejection: float,
    max_references: int = 200,
) -> OpenSetModel | None:
    """The open-set score for the head ``head_state`` trained on ``ds`` (a :class:`FeatureDataset`;
    ``landmark_ids[c]`` is class ``c``'s landmark id), aligned with the bundle's references (picked from the
    gallery as :func:`shared.recognition.build.select_references` picks them). Costs one head training per
    left-out landmark fold plus five for the known photos; None for fewer than two landmarks."""
    ids = np.asarray(landmark_ids, dtype=np.int64)
    landmark_rows, non_landmark_rows = ds.landmark_rows, ds.non_landmark_rows
    raw_gallery = l2_normalize(ds.features[landmark_rows])
    gallery_landmarks = ids[ds.data.labels[landmark_rows]]
    if len(np.unique(gallery_landmarks)) < 2:
        return None
    raw_negatives = l2_normalize(ds.features[non_landmark_rows])

    def head_transform(state: dict[str, Any] | None) -> Transform:
        return lambda x: project(state, np.asarray(x, dtype=np.float32))

    final = head_transform(head_state)

    def learn(keep: np.ndarray) -> Transform:
        """The head trained on the kept gallery rows and every negative (the final head when all are kept)."""
        if keep.all():
            return final
        rows = np.sort(np.concatenate([landmark_rows[keep], non_landmark_rows]))
        sub = ds.subset(rows)
        return head_transform(train_on_features(sub.features, sub.data, config, views=sub.views).head_state)

    rows = reference_rows(final(raw_gallery), gallery_landmarks, max_references)
    lids = np.unique(gallery_landmarks)
    means = l2_normalize(np.stack([raw_gallery[gallery_landmarks == lid].mean(axis=0) for lid in lids]))
    return fit_open_set(
        raw_gallery,
        gallery_landmarks,
        LandmarkIndex(means, lids),
        LandmarkIndex(raw_gallery[rows], gallery_landmarks[rows]),
        raw_negatives,
        decision,
        unknown_rejection=unknown_rejection,
        learn=learn,
    )
