"""Unknown landmarks on ../shared/data: why the Summer Palace gets the Forbidden City, and what rejecting it costs.

The test set has one photo of a landmark the gallery does not know (the Summer Palace). This prints, per landmark,
its calibrated threshold, where that photo scores against it, and the leave-one-out spread of the landmark's own
gallery photos; then it tries the open-set rule "each landmark's threshold is also above the q-quantile of the
OTHER landmarks' gallery photos scored against it" (known landmarks standing in for unknown ones) for several q,
and reports landmark accuracy, non-landmark accuracy and wrong landmarks for each. Uses the evaluator's embedding
cache (run `landmarks eval --manifest ../shared/data/manifest.csv` first to fill it, or wait for the embedding).

    .venv/bin/python bench/bench_open_set.py [--manifest CSV] [--out bench/results/open_set.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from shared.evaluation.recognition import EvalOptions, build_eval_bundle, embed_rows, metrics_for
from shared.gallery.manifest import read_eval_manifest
from shared.index import l2_normalize
from shared.model.factory import decode_side, embedder_from_settings
from shared.recognition.recognizer import Recognizer
from shared.settings import get_settings

QUANTILES = (0.9, 0.95, 0.98, 0.99, 1.0)


class _Precomputed:
    def embed(self, images: object) -> np.ndarray:
        raise RuntimeError("decides on cached embeddings only")


def verification_scores(queries: np.ndarray, references: np.ndarray, k: int) -> np.ndarray:
    """Mean similarity to the ``k`` most similar references: the decision's verification score."""
    sims = queries @ references.T
    k = min(k, sims.shape[1])
    return np.sort(sims, axis=1)[:, -k:].mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=Path("../shared/data/manifest.csv"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/open_set.json"))
    args = parser.parse_args()
    if not args.manifest.is_file():
        raise SystemExit(f"{args.manifest} is absent: this bench needs the team's evaluation corpus")

    settings = get_settings()
    rec = settings.recognition
    rows = read_eval_manifest(args.manifest)
    embedder = embedder_from_settings(rec)
    embedded = embed_rows(
        rows,
        embedder,
        cache_dir=settings.state_dir / "embeddings" / embedder.cache_key(),
        min_side=decode_side(embedder.config),
    )
    e = l2_normalize(embedded.embeddings)
    options = EvalOptions(rejection=rec.non_landmark_rejection)
    bundle = build_eval_bundle(rows, e, embedder.describe(), options)
    test = [i for i, r in enumerate(rows) if r.split == "test"]
    test_rows = [rows[i] for i in test]
    ids = {lm.slug: lm.id for lm in bundle.landmarks}
    gallery = [i for i, r in enumerate(rows) if r.split == "train" and r.is_landmark]
    gallery_ids = np.array([ids[rows[i].landmark] for i in gallery])  # type: ignore[index]
    unknown = [i for i in test if not rows[i].is_landmark and rows[i].path.parent.name != "non_landmark"]
    k = options.verification_k

    per_landmark = []
    others: dict[int, np.ndarray] = {}
    for lm in bundle.landmarks:
        refs = bundle.references[bundle.reference_landmarks == lm.id]
        own = refs @ refs.T
        np.fill_diagonal(own, -1.0)
        loo = np.sort(own, axis=1)[:, -k:].mean(axis=1)
        truth = [i for i in test if rows[i].landmark == lm.slug]
        others[lm.id] = verification_scores(e[gallery][gallery_ids != lm.id], refs, k)
        per_landmark.append(
            {
                "landmark": lm.slug,
                "threshold": round(bundle.thresholds.verification_for(lm.id), 4),
                "own_leave_one_out_q10": round(float(np.quantile(loo, 0.1)), 4),
                "own_test_median": round(float(np.median(verification_scores(e[truth], refs, k))), 4),
                "unknown_photos": {
                    rows[i].path.parent.name: round(float(verification_scores(e[[i]], refs, k)[0]), 4) for i in unknown
                },
            }
        )

    def run(thresholds: object) -> dict[str, object]:
        recognizer = Recognizer(dataclasses.replace(bundle, thresholds=thresholds), _Precomputed())
        predicted = [recognizer.slug(r.landmark_id) for r in recognizer.decide(e[test])]
        m = metrics_for(test_rows, predicted)
        return {key: m[key] for key in ("landmark_accuracy", "non_landmark_accuracy", "wrong_landmark")} | {
            "unknown_accepted_as": {
                rows[i].path.parent.name: p for i, p in zip(test, predicted, strict=True) if i in unknown
            }
        }

    sweep = [{"rule": "calibrated (default)", **run(bundle.thresholds)}]
    for q in QUANTILES:
        raised = {
            lid: max(bundle.thresholds.verification_for(lid), float(np.quantile(s, q))) for lid, s in others.items()
        }
        sweep.append(
            {"rule": f"other landmarks' q{q:g}", **run(dataclasses.replace(bundle.thresholds, per_landmark=raised))}
        )

    for row in per_landmark:
        print(json.dumps(row))
    for row in sweep:
        print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"per_landmark": per_landmark, "open_set_sweep": sweep}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
