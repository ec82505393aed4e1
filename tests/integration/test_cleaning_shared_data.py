"""The default cleaning threshold on the real development corpus: plant off-topic photos, see them rejected.

For every landmark, its train photos are the gallery and the corpus's non-landmark photos are planted into it.
References are (a) the 5 train photos closest to the mean, as cleaning picks them without hand-picked ones, and
(b) 5 random train photos standing in for hand-picked ones (scored against the rest). Embeddings are cached under
the state dir (shared with the evaluator's test), so re-runs take seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.shared_data, pytest.mark.slow]


def test_default_threshold_keeps_true_photos_and_rejects_planted_ones(shared_data: Path) -> None:
    manifest = shared_data / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"{manifest} is absent")
    from shared.db.models import GalleryRole
    from shared.evaluation.recognition import embed_rows
    from shared.gallery.cleaning import auto_references, decide_roles, mean_distances
    from shared.gallery.manifest import read_eval_manifest
    from shared.imaging import fit_for_resize
    from shared.model import Embedder, EmbedderConfig
    from shared.model.embedder import DECODE_KEY
    from shared.settings import GallerySettings, RecognitionSettings, Settings

    rec, threshold = RecognitionSettings(), GallerySettings().cleaning_max_distance  # what ships
    config = EmbedderConfig(backbone=rec.backbone, pooling=rec.pooling, image_size=rec.image_size)
    rows = read_eval_manifest(manifest)
    embedded = embed_rows(
        rows,
        Embedder(config, device=rec.device, batch_size=rec.batch_size),
        cache_dir=Settings().state_dir / "embeddings" / f"{config.key()}_{DECODE_KEY}",
        min_side=config.image_size,
        fit=fit_for_resize(config.resize, config.decode_fit),
    )
    assert not embedded.failed
    x = embedded.embeddings
    slugs = np.array([r.landmark or "" for r in rows])
    train = np.array([r.split == "train" for r in rows])
    planted = x[slugs == ""]
    rng = np.random.default_rng(0)
    outcome: dict[str, list[bool]] = {"auto_kept": [], "auto_rejected": [], "hand_kept": [], "hand_rejected": []}
    for slug in sorted(set(slugs) - {""}):
        gallery = x[(slugs == slug) & train]
        picked = rng.choice(len(gallery), 5, replace=False)
        rest = np.delete(gallery, picked, axis=0)
        for name, refs, true_photos in (
            ("auto", auto_references(gallery, 5), gallery),
            ("hand", gallery[picked], rest),
        ):
            roles = decide_roles(mean_distances(np.concatenate([true_photos, planted]), refs), threshold)
            outcome[f"{name}_kept"] += [r == GalleryRole.train for r in roles[: len(true_photos)]]
            outcome[f"{name}_rejected"] += [r == GalleryRole.rejected for r in roles[len(true_photos) :]]
    rates = {k: round(float(np.mean(v)), 3) for k, v in outcome.items()}
    print(f"cleaning at {threshold}: {rates}")
    # Measured: auto kept 0.966, rejected 0.963; random picks kept 0.94, rejected 0.97 (942 train photos of 15
    # landmarks, 327 non-landmark photos planted into each landmark's gallery). Photos of another landmark are
    # harder: 0.5 rejects only about 40% of them (0.4 would reject 85-95% but keep just 63-80% of true photos).
    assert rates["auto_kept"] >= 0.9 and rates["hand_kept"] >= 0.9, rates
    assert rates["auto_rejected"] >= 0.9 and rates["hand_rejected"] >= 0.9, rates
