"""The prior's evaluation: tuned on train rows only (changing test rows cannot change the choice), weight 0 is
always a candidate, and the report compares test rows with and without the chosen prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.evaluation.recognition import EvalOptions
from shared.evaluation.scenes import compare_prior
from shared.gallery.manifest import EvalRow

DIM = 24
ARCH, PIZZA = 698, 963


def _corpus(seed: int = 0) -> tuple[list[EvalRow], np.ndarray, np.ndarray]:
    """Three landmarks on their own axes (architecture photos) and non-landmarks elsewhere (food photos)."""
    rng = np.random.default_rng(seed)
    rows, emb, logits = [], [], []
    for n in range(160):
        lid = n % 4  # 0..2 landmarks, 3 = non-landmark
        split = "test" if n % 5 == 0 else "train"
        v = rng.standard_normal(DIM) * 0.4
        lg = np.zeros(1000, np.float32)
        if lid < 3:
            v[lid] += 1.0
            lg[ARCH] = 8.0
        else:
            lg[PIZZA] = 8.0
        kind = "landmark" if lid < 3 else "non_landmark"
        slug = f"lm{lid}" if lid < 3 else None
        rows.append(EvalRow(Path(f"/nowhere/{n:04d}.jpg"), kind, slug, slug or "", "", "", None, None, split))
        emb.append(v)
        logits.append(lg)
    return rows, np.asarray(emb, np.float32), np.asarray(logits, np.float32)


def test_tuning_reads_train_rows_only() -> None:
    rows, emb, logits = _corpus()
    options = EvalOptions(margin_share=0.0)
    kwargs = {"weights": (0.1,), "saturations": (1.0,)}
    report = compare_prior(rows, emb, logits, {"embedding_dim": DIM}, options, **kwargs)
    assert {t["weight"] for t in report["tuning"]} == {0.0, 0.1}
    assert set(report["chosen"]) == {"weight", "labels", "saturation"}
    assert set(report["test_without_prior"]) >= {"landmark_accuracy", "non_landmark_accuracy", "wrong_landmark"}
    # Scramble the test rows: the tuning (train rows only) must not move.
    test = [i for i, r in enumerate(rows) if r.split == "test"]
    scrambled = emb.copy()
    scrambled[test] = np.random.default_rng(9).standard_normal((len(test), DIM))
    again = compare_prior(rows, scrambled, logits, {"embedding_dim": DIM}, options, **kwargs)
    assert again["tuning"] == report["tuning"] and again["chosen"] == report["chosen"]
    assert again["test_at_target"]["target_non_landmark_accuracy"] == 0.99
