"""Our embeddings side by side with the classical local-feature peer, and the hybrid of both, on ../shared/data.

- ``ours``: ``landmarks eval``'s own functions in-process (``shared.evaluation.recognition``): gallery from the
  train rows, thresholds calibrated on the train non-landmarks, every test row decided. Accuracy comes from the
  evaluator's embedding cache; ms/photo from embedding the test photos again in this run (decode + network +
  decision).
- ``peer``: DELF-style with OpenCV's SIFT (``bench/peer``): 1000 keypoints at 640 px, every query descriptor's
  nearest gallery descriptors (FLANN kd-tree) vote for gallery photos, the ``--shortlist`` photos with most votes
  are verified (Lowe ratio 0.75, RANSAC homography), the best inlier count decides. Its threshold is calibrated
  like ours: at 99% rejection of the train non-landmarks.
- ``peer, whole gallery``: RANSAC against every gallery photo, on ``--exhaustive`` test photos only (it is the
  slow end: ms/photo, and how often it agrees with the shortlist).
- ``hybrid rerank`` (the Kaggle GLR winners' recipe): the embedding picks the ``--rerank-top`` nearest gallery
  photos, RANSAC reranks them, the best inlier count decides (its own calibrated threshold).
- ``hybrid band ±b``: the embedding decides unless its verification score lies within ``b`` of the landmark's
  threshold; there the candidate landmark's ``--verify-top`` nearest gallery photos are verified geometrically and
  the candidate is accepted when the best inlier count passes a threshold calibrated on the train non-landmarks.

Gallery and calibration photos' SIFT features are cached under ``.landmarks/bench/sift-*`` (indexing work, done
once); the test photos are decoded and described again in every run, so their times are this run's. Each
photo-pair verification is timed once; a method's ms/photo adds the pairs it needs.

Writes ``bench/results/peer.json`` and prints a table. ``--quick`` (about a minute on 2 shared cores): every 5th
test row and train non-landmark, 5 gallery photos per landmark, shortlists of 10. Skips with a message when
../shared/data is absent. Run from the repository root: ``.venv/bin/python bench/bench_peer.py [--quick]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from bench_scale import DEFAULT_MANIFEST, machine_info
from peer import Features, VoteIndex, calibrate_inliers, extract, shortlist_by_similarity, verify
from rich.console import Console
from rich.table import Table

from shared.evaluation.recognition import (
    EmbeddedRows,
    EvalOptions,
    build_eval_bundle,
    embed_rows,
    evaluate_embeddings,
    metrics_for,
)
from shared.gallery.manifest import EvalRow, read_eval_manifest
from shared.imaging import ImageDecodeError, decode_photo
from shared.index import l2_normalize
from shared.recognition.recognizer import Recognizer

RESULTS = Path(__file__).resolve().parent / "results" / "peer.json"
SEEDS = {"centroid_s": 0.23, "delf_s": 0.70, "speedup_low": 3, "speedup_high": 15}  # the seeds' own figures


@dataclass(frozen=True)
class PeerOptions:
    max_side: int = 640
    n_features: int = 1000
    ratio: float = 0.75
    reprojection_px: float = 5.0
    shortlist: int = 20  # gallery photos verified after the descriptor vote
    neighbours: int = 3  # gallery descriptors each query descriptor votes for
    rerank_top: int = 10  # hybrid rerank: nearest gallery photos by embedding
    verify_top: int = 5  # hybrid band: the candidate landmark's nearest gallery photos
    bands: tuple[float, ...] = (0.02, 0.05, 0.1, 1.0)
    rejection: float = 0.99
    exhaustive: int = 4


# --------------------------------------------------------------------------------------------- rows


def select_rows(rows: Sequence[EvalRow], *, quick: bool) -> list[EvalRow]:
    """Quick: every 5th test row and train non-landmark, 5 evenly spaced gallery photos per landmark."""
    if not quick:
        return list(rows)
    gallery: dict[str, list[EvalRow]] = {}
    for r in rows:
        if r.split == "train" and r.is_landmark:
            gallery.setdefault(r.landmark or "", []).append(r)
    keep = {id(g[int(i * len(g) / 5)]) for g in gallery.values() for i in range(min(5, len(g)))}
    negatives = [r for r in rows if r.split == "train" and not r.is_landmark][::5]
    tests = [r for r in rows if r.split == "test"][::5]
    keep |= {id(r) for r in negatives + tests}
    return [r for r in rows if id(r) in keep]


# --------------------------------------------------------------------------------------------- features


@dataclass
class Described:
    features: Features
    decode_s: float = 0.0
    extract_s: float = 0.0
    cached: bool = False


def _cache_path(folder: Path, path: Path) -> Path:
    st = path.stat()
    digest = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    return folder / digest[:2] / f"{digest}.npz"


def describe(path: Path, opts: PeerOptions, cache: Path | None) -> Described:
    """Decode (long side >= ``max_side``) and SIFT-describe one photo; from the cache when given and present."""
    cached = _cache_path(cache, path) if cache else None
    if cached is not None and cached.is_file():
        with np.load(cached) as z:
            return Described(Features(z["points"], z["descriptors"].astype(np.float32)), cached=True)
    t0 = time.perf_counter()
    try:
        image = decode_photo(path, min_side=opts.max_side).image
    except (ImageDecodeError, OSError):
        image = None
    t1 = time.perf_counter()
    if image is None:
        features = Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    else:
        features = extract(image, max_side=opts.max_side, n_features=opts.n_features)
    t2 = time.perf_counter()
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        # SIFT descriptors are whole numbers in 0..255: uint8 stores them exactly.
        np.savez(tmp, points=features.points, descriptors=features.descriptors.astype(np.uint8))
        tmp.replace(cached)
    return Described(features, t1 - t0, t2 - t1)


class PairBook:
    """Inlier counts of (query, gallery photo) pairs, each verified and timed once, shared by every method."""

    def __init__(self, gallery: Sequence[Features], opts: PeerOptions) -> None:
        self.gallery = gallery
        self.opts = opts
        self.seen: dict[tuple[int, int], tuple[int, float]] = {}

    def inliers(self, query_id: int, query: Features, photos: Sequence[int]) -> tuple[np.ndarray, float]:
        """Inlier counts against the given gallery photos and the seconds those verifications took."""
        counts, seconds = [], 0.0
        for g in photos:
            key = (query_id, int(g))
            if key not in self.seen:
                t0 = time.perf_counter()
                v = verify(query, self.gallery[g], ratio=self.opts.ratio, reprojection_px=self.opts.reprojection_px)
                self.seen[key] = (v.inliers, time.perf_counter() - t0)
            counts.append(self.seen[key][0])
            seconds += self.seen[key][1]
        return np.asarray(counts, dtype=np.int64), seconds


@dataclass
class Verified:
    """A query's best gallery photo among those verified: its landmark and inlier count, and the time spent."""

    landmark: str | None
    inliers: int
    seconds: float


def best_of(book: PairBook, qid: int, query: Features, photos: np.ndarray, labels: Sequence[str]) -> Verified:
    if len(photos) == 0:
        return Verified(None, 0, 0.0)
    counts, seconds = book.inliers(qid, query, photos)
    best = int(np.argmax(counts))
    return Verified(labels[int(photos[best])], int(counts[best]), seconds)


def decide_by_inliers(found: Sequence[Verified], threshold: int) -> list[str | None]:
    return [v.landmark if v.inliers >= threshold else None for v in found]


# --------------------------------------------------------------------------------------------- methods


def per_photo_ms(*seconds: Sequence[float] | float, n: int) -> float:
    total = sum(float(np.sum(s)) for s in seconds)
    return 1e3 * total / max(n, 1)


def row_for(name: str, rows: Sequence[EvalRow], predicted: Sequence[str | None], ms: float, **extra: Any) -> dict:
    m = metrics_for(rows, predicted)
    return {
        "method": name,
        "landmark_accuracy": m["landmark_accuracy"],
        "non_landmark_accuracy": m["non_landmark_accuracy"],
        "wrong_landmark": m["wrong_landmark"],
        "false_accepts": m["false_accepts"],
        "ms_per_photo": ms,
        **extra,
    }


def band_decisions(
    ours: Sequence[Any], thresholds: Any, verified: Sequence[Verified | None], band: float, inlier_threshold: int
) -> tuple[list[int | None], list[bool]]:
    """Per photo: the landmark id the hybrid accepts (or None) and whether it needed geometric verification."""
    out, used = [], []
    for result, geo in zip(ours, verified, strict=True):
        candidate = result.landmark_id if result.landmark_id is not None else (result.runner_up or (None,))[0]
        if candidate is None:
            out.append(None)
            used.append(False)
            continue
        distance = result.score - thresholds.verification_for(candidate)
        if abs(distance) <= band and geo is not None:
            out.append(candidate if geo.inliers >= inlier_threshold else None)
            used.append(True)
        else:
            out.append(result.landmark_id)
            used.append(False)
    return out, used


# --------------------------------------------------------------------------------------------- the run


def run(manifest: Path, opts: PeerOptions, *, quick: bool, console: Console) -> dict[str, Any]:
    from shared.model.factory import embedder_from_settings
    from shared.settings import get_settings

    settings = get_settings()
    rec = settings.recognition
    rows = select_rows(read_eval_manifest(manifest), quick=quick)
    gallery_i = [i for i, r in enumerate(rows) if r.split == "train" and r.is_landmark]
    negative_i = [i for i, r in enumerate(rows) if r.split == "train" and not r.is_landmark]
    test_i = [i for i, r in enumerate(rows) if r.split == "test"]
    test_rows = [rows[i] for i in test_i]
    console.print(f"{len(gallery_i)} gallery, {len(negative_i)} calibration non-landmarks, {len(test_i)} test photos")

    # ---- ours: the evaluator, accuracy from the cache, time from embedding the test photos again
    # as the recognize worker runs it; SIFT gets one thread too (main)
    embedder = embedder_from_settings(rec, threads=rec.worker_threads)
    config = embedder.config
    cache = settings.state_dir / "embeddings" / embedder.cache_key()
    train_rows = [rows[i] for i in gallery_i + negative_i]
    train = embed_rows(train_rows, embedder, cache_dir=cache, min_side=config.image_size, max_pixels=rec.max_pixels)
    embedder.load()
    fresh = embed_rows(test_rows, embedder, cache_dir=None, min_side=config.image_size, max_pixels=rec.max_pixels)
    embeddings = np.zeros((len(rows), fresh.embeddings.shape[1]), np.float32)
    embeddings[gallery_i + negative_i] = train.embeddings
    embeddings[test_i] = fresh.embeddings
    gps = [None] * len(rows)
    embedded = EmbeddedRows(embeddings, gps, embedded=fresh.embedded, decode_s=fresh.decode_s, embed_s=fresh.embed_s)
    options = EvalOptions(rejection=rec.non_landmark_rejection)
    report = evaluate_embeddings(rows, embedded, embedder.describe(), options)
    ours_ms = report["ms_per_photo"] + report["timings_ms"]["decide_per_photo"]
    ms = report["timings_ms"]
    console.print(
        f"ours: landmark accuracy {report['landmark_accuracy']:.3f}, {ours_ms:.0f} ms/photo (decode "
        f"{ms['decode_per_photo']:.0f}, network {ms['embed_per_photo']:.0f}, decision {ms['decide_per_photo']:.1f})"
    )
    e = l2_normalize(embeddings)
    bundle = build_eval_bundle(rows, e, embedder.describe(), options)
    recognizer = Recognizer(bundle, embedder)
    ours_test = recognizer.decide(e[test_i])
    ours_neg = recognizer.decide(e[negative_i])
    slug = {lm.id: lm.slug for lm in bundle.landmarks}
    ours_pred = [slug.get(r.landmark_id) if r.landmark_id is not None else None for r in ours_test]

    # ---- peer features: gallery and calibration photos from the cache, test photos described in this run
    sift_cache = settings.state_dir / "bench" / f"sift-{opts.max_side}-{opts.n_features}"
    t0 = time.perf_counter()
    gallery = [describe(rows[i].path, opts, sift_cache) for i in gallery_i]
    negatives = [describe(rows[i].path, opts, sift_cache) for i in negative_i]
    index_s = time.perf_counter() - t0
    tests = [describe(rows[i].path, opts, None) for i in test_i]
    labels = [rows[i].landmark or "" for i in gallery_i]
    t0 = time.perf_counter()
    votes = VoteIndex([d.features for d in gallery])
    vote_build_s = time.perf_counter() - t0
    console.print(
        f"SIFT: gallery + calibration described in {index_s:.0f} s "
        f"({sum(d.cached for d in gallery + negatives)} cached), vote index built in {vote_build_s:.1f} s"
    )
    book = PairBook([d.features for d in gallery], opts)
    queries = [(("neg", k), d) for k, d in enumerate(negatives)] + [(("test", k), d) for k, d in enumerate(tests)]
    qid = {key: n for n, (key, _) in enumerate(queries)}

    # ---- peer: descriptor vote shortlist, RANSAC
    vote_s: dict[tuple[str, int], float] = {}
    peer: dict[tuple[str, int], Verified] = {}
    t0 = time.perf_counter()
    for key, d in queries:
        t1 = time.perf_counter()
        photos = votes.shortlist(d.features, opts.shortlist, neighbours=opts.neighbours)
        vote_s[key] = time.perf_counter() - t1
        peer[key] = best_of(book, qid[key], d.features, photos, labels)
        if qid[key] % 100 == 99:
            console.log(f"peer: {qid[key] + 1}/{len(queries)} photos verified")
    console.print(f"peer: {len(queries)} photos against vote shortlists in {time.perf_counter() - t0:.0f} s")
    peer_threshold = calibrate_inliers([peer[("neg", k)].inliers for k in range(len(negatives))], opts.rejection)
    peer_found = [peer[("test", k)] for k in range(len(tests))]
    sift_s = [d.decode_s + d.extract_s for d in tests]
    results = [
        row_for("ours (embeddings, centroids + kNN)", test_rows, ours_pred, ours_ms),
        row_for(
            f"peer: SIFT vote top-{opts.shortlist} + RANSAC",
            test_rows,
            decide_by_inliers(peer_found, peer_threshold),
            per_photo_ms(sift_s, [vote_s[("test", k)] for k in range(len(tests))], [v.seconds for v in peer_found],
                         n=len(tests)),
            inlier_threshold=peer_threshold,
        ),
    ]  # fmt: skip

    # ---- peer against the whole gallery, on a few test photos
    every = np.arange(len(gallery))
    sample = [int(k) for k in np.linspace(0, len(tests) - 1, min(opts.exhaustive, len(tests)))] if tests else []
    if sample:
        t0 = time.perf_counter()
        whole = [best_of(book, qid[("test", k)], tests[k].features, every, labels) for k in sample]
        sub_rows = [test_rows[k] for k in sample]
        results.append(
            row_for(
                f"peer: SIFT + RANSAC, whole gallery ({len(sample)} photos)",
                sub_rows,
                decide_by_inliers(whole, peer_threshold),
                per_photo_ms([sift_s[k] for k in sample], [v.seconds for v in whole], n=len(sample)),
                inlier_threshold=peer_threshold,
                agrees_with_shortlist=sum(
                    w.landmark == peer_found[k].landmark for w, k in zip(whole, sample, strict=True)
                ),
            )
        )
        console.print(f"whole gallery: {len(sample)} photos in {time.perf_counter() - t0:.0f} s")

    # ---- hybrid rerank: embedding top-k gallery photos, RANSAC decides
    gallery_e = e[gallery_i]
    query_e = {("neg", k): e[i] for k, i in enumerate(negative_i)} | {("test", k): e[i] for k, i in enumerate(test_i)}
    rerank = {
        key: best_of(book, qid[key], d.features, shortlist_by_similarity(query_e[key], gallery_e, opts.rerank_top),
                     labels)
        for key, d in queries
    }  # fmt: skip
    rerank_threshold = calibrate_inliers([rerank[("neg", k)].inliers for k in range(len(negatives))], opts.rejection)
    rerank_found = [rerank[("test", k)] for k in range(len(tests))]
    results.append(
        row_for(
            f"hybrid: embedding top-{opts.rerank_top} photos + RANSAC",
            test_rows,
            decide_by_inliers(rerank_found, rerank_threshold),
            report["ms_per_photo"] + per_photo_ms(sift_s, [v.seconds for v in rerank_found], n=len(tests)),
            inlier_threshold=rerank_threshold,
        )
    )

    # ---- hybrid band: embedding decides, RANSAC only near the threshold
    gallery_ids = np.asarray(bundle_ids(bundle, labels))

    def candidate_check(key: tuple[str, int], result: Any, d: Described) -> Verified | None:
        candidate = result.landmark_id if result.landmark_id is not None else (result.runner_up or (None,))[0]
        if candidate is None:
            return None
        own = np.flatnonzero(gallery_ids == candidate)
        near = own[shortlist_by_similarity(query_e[key], gallery_e[own], opts.verify_top)]
        return best_of(book, qid[key], d.features, near, labels)

    neg_checks = [candidate_check(("neg", k), r, negatives[k]) for k, r in enumerate(ours_neg)]
    band_threshold = calibrate_inliers([v.inliers if v else 0 for v in neg_checks], opts.rejection)
    test_checks = [candidate_check(("test", k), r, tests[k]) for k, r in enumerate(ours_test)]
    ours_wrong = {k for k, (r, p) in enumerate(zip(test_rows, ours_pred, strict=True)) if p and p != r.landmark}
    ours_right = {k for k, (r, p) in enumerate(zip(test_rows, ours_pred, strict=True)) if p and p == r.landmark}
    for band in opts.bands:
        ids, used = band_decisions(ours_test, bundle.thresholds, test_checks, band, band_threshold)
        pred = [slug.get(i) if i is not None else None for i in ids]
        extra_s = [
            sift_s[k] + (test_checks[k].seconds if test_checks[k] else 0.0) for k in range(len(tests)) if used[k]
        ]
        wrong = {k for k, (r, p) in enumerate(zip(test_rows, pred, strict=True)) if p and p != r.landmark}
        right = {k for k, (r, p) in enumerate(zip(test_rows, pred, strict=True)) if p and p == r.landmark}
        results.append(
            row_for(
                f"hybrid: embedding, RANSAC within ±{band:g} of threshold",
                test_rows,
                pred,
                ours_ms + per_photo_ms(extra_s, n=len(tests)),
                inlier_threshold=band_threshold,
                verified_share=sum(used) / max(len(used), 1),
                wrong_removed=len(ours_wrong - wrong),
                wrong_added=len(wrong - ours_wrong),
                correct_lost=len(ours_right - right),
                correct_gained=len(right - ours_right),
            )
        )

    peer_ms = results[1]["ms_per_photo"]
    whole_ms = results[2]["ms_per_photo"] if sample else None
    return {
        "embedding": config.key(),
        "rows": {"gallery": len(gallery_i), "calibration_non_landmarks": len(negative_i), "test": len(test_i)},
        "ours_eval": {k: report[k] for k in ("landmark_accuracy", "non_landmark_accuracy", "wrong_landmark")}
        | {"timings_ms": report["timings_ms"], "thresholds": report["thresholds"]},
        "ours_check": metrics_for(test_rows, ours_pred)["landmark_accuracy"] == report["landmark_accuracy"],
        "sift_ms": {
            "decode": 1e3 * float(np.mean([d.decode_s for d in tests])) if tests else None,
            "extract": 1e3 * float(np.mean([d.extract_s for d in tests])) if tests else None,
            "pair": 1e3 * float(np.mean([s for _, s in book.seen.values()])) if book.seen else None,
            "pairs_verified": len(book.seen),
        },
        "speed_ratio": {
            "peer_shortlist_over_ours": peer_ms / ours_ms,
            "peer_whole_gallery_over_ours": whole_ms / ours_ms if whole_ms else None,
            "seeds": SEEDS,
        },
        "results": results,
    }


def bundle_ids(bundle: Any, labels: Sequence[str]) -> list[int]:
    by_slug = {lm.slug: lm.id for lm in bundle.landmarks}
    return [by_slug[s] for s in labels]


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(console: Console, report: dict[str, Any]) -> None:
    table = Table(title="landmark accuracy and speed: ours vs the SIFT peer vs hybrids (test rows)")
    for col in ("method", "landmark acc", "non-landmark acc", "wrong lm", "ms/photo", "x ours", "note"):
        table.add_column(col, justify="right")
    ours_ms = report["results"][0]["ms_per_photo"]
    for r in report["results"]:
        note = []
        if "inlier_threshold" in r:
            note.append(f"inliers >= {r['inlier_threshold']}")
        if "verified_share" in r:
            note.append(f"verified {r['verified_share']:.0%}, wrong -{r['wrong_removed']}+{r['wrong_added']}")
            note.append(f"correct -{r['correct_lost']}+{r['correct_gained']}")
        if "agrees_with_shortlist" in r:
            note.append(f"agrees with shortlist on {r['agrees_with_shortlist']}")
        table.add_row(
            r["method"], fmt(r["landmark_accuracy"]), fmt(r["non_landmark_accuracy"]), str(r["wrong_landmark"]),
            fmt(r["ms_per_photo"], 0), fmt(r["ms_per_photo"] / ours_ms, 1), "; ".join(note),
        )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a subset, shortlists of 10 (about a minute)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--shortlist", type=int, default=None, help="gallery photos verified after the vote")
    parser.add_argument("--rerank-top", type=int, default=None, help="hybrid: nearest gallery photos by embedding")
    parser.add_argument("--verify-top", type=int, default=None, help="hybrid band: candidate's photos to verify")
    parser.add_argument("--exhaustive", type=int, default=None, help="test photos verified against the whole gallery")
    parser.add_argument("--bands", nargs="*", type=float, default=None, help="hybrid bands around the threshold")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console(width=200)
    cv2.setNumThreads(1)  # one core per photo on both sides, like a recognize worker process
    if not args.manifest.is_file():
        console.print(f"[yellow]skipped: {args.manifest} is absent (the dev corpus ../shared/data is not here)[/]")
        return
    base = PeerOptions(shortlist=10, rerank_top=5, verify_top=3, exhaustive=2) if args.quick else PeerOptions()
    overrides = {
        k: v
        for k, v in {
            "shortlist": args.shortlist,
            "rerank_top": args.rerank_top,
            "verify_top": args.verify_top,
            "exhaustive": args.exhaustive,
            "bands": tuple(args.bands) if args.bands else None,
        }.items()
        if v is not None
    }
    opts = PeerOptions(**{**asdict(base), **overrides})
    t0 = time.perf_counter()
    body = run(args.manifest, opts, quick=args.quick, console=console)
    report = {
        "bench": "peer",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine_info(),
        "options": asdict(opts),
        "wall_s": time.perf_counter() - t0,
        **body,
    }
    print_table(console, report)
    ratio = body["speed_ratio"]
    whole = ratio["peer_whole_gallery_over_ours"]
    console.print(
        f"peer / ours time: {ratio['peer_shortlist_over_ours']:.1f}x with the vote shortlist"
        + (f", {whole:.1f}x against the whole gallery" if whole else "")
        + f" (seeds: centroids {SEEDS['speedup_low']}-{SEEDS['speedup_high']}x faster than DELF). "
        + f"Load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} shared cores."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
