"""The open-set protocol of `landmarks eval`: held-out landmarks become unknown-landmark photos, and the report
tells them apart from everyday photos and known landmarks, with an operating curve and the AUROC."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from shared.evaluation.open_set import (
    acceptance_slack,
    apply_holdout,
    auroc,
    choose_holdout,
    holdout_splits,
    open_set_metrics,
    summarize,
)
from shared.evaluation.recognition import EmbeddedRows
from shared.gallery.manifest import EvalRow, read_eval_manifest
from shared.recognition.decision import METHOD_GEO, METHOD_NONE, METHOD_VERIFIED, RecognitionResult, Thresholds

SLUGS = ("a", "b", "c", "d")
HEADER = ["path", "kind", "landmark_id", "landmark_name", "city", "country", "lat", "lon", "split"]


def row(kind: str, landmark: str | None, split: str, notes: str = "") -> EvalRow:
    return EvalRow(Path(f"{landmark}-{split}.jpg"), kind, landmark, "", "", "", None, None, split, notes=notes)


def corpus() -> list[EvalRow]:
    rows = [row("landmark", s, split) for s in SLUGS for split in ("train", "train", "test")]
    rows += [row("non_landmark", None, "train"), row("non_landmark", None, "test")]
    rows.append(row("non_landmark", None, "test", "unknown landmark (summer_palace): not in the gallery"))
    return rows


def test_the_same_seed_holds_out_the_same_landmarks_and_others_differ() -> None:
    rows = corpus()
    assert choose_holdout(rows, 2, seed=3) == choose_holdout(rows, 2, seed=3)
    assert len({choose_holdout(rows, 2, seed=s) for s in range(10)}) > 1
    assert holdout_splits(rows, count=2, seed=5, repeats=3) == [choose_holdout(rows, 2, 5 + i) for i in range(3)]
    assert holdout_splits(rows, landmarks=["c", "a"]) == [("a", "c")]
    assert holdout_splits(rows) == [()]
    with pytest.raises(ValueError, match="1 to 3 of 4"):
        choose_holdout(rows, 4, seed=0)


def test_a_held_out_landmark_leaves_the_gallery_and_its_test_photos_are_unknown() -> None:
    rows = corpus()
    kept_rows, kept = apply_holdout(rows, ["b"])
    assert all(r.landmark != "b" for r in kept_rows)
    assert [rows[i].path for i in kept] == [r.path for r in kept_rows]
    assert not any(rows[i].landmark == "b" and rows[i].split == "train" for i in kept)
    [held] = [r for r in kept_rows if r.held_out]
    assert held.split == "test" and held.kind == "non_landmark" and held.held_out == "b" and held.is_unknown_landmark
    noted = [r for r in kept_rows if r.notes]
    assert [r.is_unknown_landmark for r in noted] == [True]  # the manifest's own unknown landmark
    assert sum(r.is_unknown_landmark for r in kept_rows) == 2
    with pytest.raises(ValueError, match="not landmarks of this manifest: z"):
        apply_holdout(rows, ["z"])


def test_embedded_rows_follow_the_kept_rows() -> None:
    embedded = EmbeddedRows(np.arange(12, dtype=np.float32).reshape(6, 2), [None, (1.0, 2.0), None, None, None, None])
    part = embedded.subset([1, 4])
    np.testing.assert_array_equal(part.embeddings, [[2, 3], [8, 9]])
    assert part.gps == [(1.0, 2.0), None]


def test_manifest_notes_are_read_when_the_column_exists(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*HEADER, "notes"])
        writer.writerow(["x.jpg", "non_landmark", "", "", "", "", "", "", "test", "Unknown landmark (a palace)"])
        writer.writerow(["y.jpg", "non_landmark", "", "", "", "", "", "", "test", "ImageNet class zucchini"])
    rows = read_eval_manifest(manifest)
    assert [r.is_unknown_landmark for r in rows] == [True, False]


def result(
    landmark: int | None, score: float, best: int | None = None, method: str = METHOD_VERIFIED
) -> RecognitionResult:
    runner = None if best is None else (best, score)
    return RecognitionResult(landmark, score, method if landmark else METHOD_NONE, "v", runner_up=runner)


def test_slack_is_the_score_above_the_threshold_its_candidate_faced() -> None:
    thresholds = Thresholds(global_score=0.3, verification=0.6, geo=0.4, per_landmark={2: 0.7})
    results = [
        result(1, 0.8),
        result(2, 0.75),
        result(None, 0.65, best=2),
        result(3, 0.5, method=METHOD_GEO),
        RecognitionResult(None, float("-inf"), METHOD_NONE, "v"),
    ]
    candidates, slack = acceptance_slack(results, thresholds)
    assert candidates.tolist() == [1, 2, 2, 3, -1]
    np.testing.assert_allclose(slack[:4], [0.2, 0.05, -0.05, 0.1])
    assert slack[4] == -np.inf


def test_auroc_counts_ties_half() -> None:
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auroc(np.array([1.0, 3.0]), np.array([2.0])) == 0.5
    assert auroc(np.array([]), np.array([1.0])) is None


def test_open_set_metrics_separate_unknown_everyday_and_known() -> None:
    rows = [row("landmark", "a", "test")] * 4 + [row("landmark", "b", "test")] * 2
    rows += [unknown_row("c")] * 3 + [row("non_landmark", None, "test")] * 2
    ids = {"a": 1, "b": 2}
    thresholds = Thresholds(global_score=0.0, verification=0.5, geo=0.5)
    # known: a right at 0.9, 0.8, 0.55 (low), missed once; b taken for a once (wrong), right once at 0.7
    results = [result(1, 0.9), result(1, 0.8), result(1, 0.55), result(None, 0.4, best=1)]
    results += [result(1, 0.6), result(2, 0.7)]
    # unknown: one accepted at 0.6 (as a), two turned away; everyday: both turned away
    results += [result(1, 0.6), result(None, 0.45, best=2), result(None, 0.3, best=1)]
    results += [result(None, 0.2, best=1), result(None, 0.1, best=2)]
    predicted = [{1: "a", 2: "b"}.get(r.landmark_id) for r in results]

    m = open_set_metrics(rows, predicted, results, thresholds, ids)

    assert m["counts"] == {"known": 6, "unknown_landmark": 3, "everyday": 2}
    assert m["unknown_landmark_rejection"] == pytest.approx(2 / 3)
    assert m["everyday_rejection"] == 1.0
    assert m["known_accuracy"] == pytest.approx(4 / 6) and m["known_wrong"] == 1
    assert m["known_wrong_share"] == pytest.approx(1 / 6)
    # Turning away every unknown photo means a bar above the accepted unknown's slack (0.1): known photos with
    # more slack stay (0.9, 0.8, 0.7 -> 0.4, 0.3, 0.2), 0.55 (slack 0.05) goes.
    assert m["known_accuracy_at_99"] == pytest.approx(3 / 6)
    # Right best candidates among known photos: slacks 0.4, 0.3, 0.05, -0.1, 0.2; unknown: 0.1, -0.05, -0.2.
    assert m["auroc"] == pytest.approx((3 + 3 + 2 + 1 + 3) / 15)


def unknown_row(slug: str) -> EvalRow:
    return EvalRow(Path("u.jpg"), "non_landmark", None, "", "", "", None, None, "test", held_out=slug)


def test_summary_gives_mean_and_spread() -> None:
    out = summarize([{"known_accuracy": 0.8, "auroc": None}, {"known_accuracy": 0.6, "auroc": 0.9}])
    assert out["splits"] == 2
    assert out["mean"]["known_accuracy"] == pytest.approx(0.7)
    assert out["min"]["known_accuracy"] == 0.6 and out["max"]["known_accuracy"] == 0.8
    assert out["mean"]["auroc"] == 0.9


def test_eval_holds_landmarks_out_and_summarises_the_splits(tmp_path: Path) -> None:
    """`landmarks eval --holdout-landmarks 1 --holdout-repeats 2` on drawn photos: two splits, each with one
    landmark's test photos counted as unknown, and the mean and spread over both."""
    from typer.testing import CliRunner

    from devtools.stack.testing import drawn_manifest
    from workers.cli.main import app

    manifest = drawn_manifest(tmp_path, {"red-square": 0, "blue-disc": 1, "green-triangle": 2})
    out = tmp_path / "report.json"
    args = ["eval", "--manifest", str(manifest), "--image-size", "64", "--no-cache", "--json", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--holdout-landmarks", "1", "--holdout-repeats", "2", "--holdout-seed", "1"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    splits = report["splits"]
    assert [s["held_out"] for s in splits] == [list(choose_holdout(read_eval_manifest(manifest), 1, s)) for s in (1, 2)]
    for split in splits:
        assert split["open_set"]["counts"] == {"known": 4, "unknown_landmark": 2, "everyday": 2}
        assert split["counts"]["train_landmark"] == 12  # the held-out landmark's train photos are gone
    assert report["open_set"]["splits"] == 2
    assert set(report["open_set"]["mean"]) >= {"unknown_landmark_rejection", "known_accuracy", "auroc"}
    assert "open set over 2 splits" in result.output

    named = CliRunner().invoke(app, [*args, "--holdout", "blue-disc"])
    assert named.exit_code == 0, named.output
    assert json.loads(out.read_text())["held_out"] == ["blue-disc"]
    refused = CliRunner().invoke(app, [*args, "--holdout", "eiffel-tower"])
    assert refused.exit_code == 1 and "not landmarks of this manifest: eiffel-tower" in refused.output
