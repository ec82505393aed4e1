"""The landmark-presence gate in the workers' decision (``Recognizer.decide``), on a small synthetic bundle.

Landmark 1 lies along e0, landmark 2 along e1; the gate's weight points along e3, so a query's e3 component alone
decides whether the gate lets an otherwise clear acceptance through.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.evaluation.trained_head import gated_predictions
from shared.imaging.decode import DecodedPhoto
from shared.imaging.meta import PhotoMeta
from shared.index import l2_normalize
from shared.recognition import (
    METHOD_GEO,
    METHOD_NONE,
    METHOD_VERIFIED,
    Bundle,
    BundleIntegrityError,
    LandmarkInfo,
    Recognizer,
    Thresholds,
    load_bundle,
    save_bundle,
)
from shared.recognition.decision import PresenceGate, decide

DIM = 6
COLOSSEUM = (41.8902, 12.4922)
GATE = PresenceGate(np.eye(DIM, dtype=np.float32)[3] * 10.0, 0.0, threshold=0.0)


def _q(*weights: float) -> np.ndarray:
    return l2_normalize(np.array([list(weights) + [0.0] * (DIM - len(weights))], dtype=np.float32))[0]


LANDMARK_WITH_GATE = _q(1.0, 0.0, 0.0, 0.2)  # clear landmark 1, gate logit +1.96
LANDMARK_WITHOUT_GATE = _q(1.0, 0.0, 0.0, -0.2)  # the same landmark by the rule, gate logit -1.96
NOTHING = _q(0.0, 0.0, 0.0, 0.0, 1.0)  # rejected by the rule whatever the gate says


def _bundle(gate: PresenceGate | None = GATE) -> Bundle:
    e = np.eye(DIM, dtype=np.float32)
    model: dict[str, Any] = {"backbone": "efficientnet_lite2", "image_size": 64, "embedding_dim": DIM}
    if gate is not None:
        model["presence_gate"] = gate.to_dict()
    return Bundle(
        version="v-gate",
        model=model,
        thresholds=Thresholds(global_score=0.6, verification=0.5, geo=0.3, margin=0.1),
        landmarks=(
            LandmarkInfo(1, "colosseum", "Colosseum", "Rome", "Italy", *COLOSSEUM),
            LandmarkInfo(2, "taj_mahal", "Taj Mahal", "Agra", "India", 27.1751, 78.0421),
        ),
        centroids=e[:2],
        centroid_landmarks=np.array([1, 2]),
        references=e[:2],
        reference_landmarks=np.array([1, 2]),
    )


class _Fixed:
    """An embedder that returns given rows in turn (the decision is under test, not the network)."""

    def __init__(self, rows: Sequence[np.ndarray]) -> None:
        self.rows = list(rows)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        out, self.rows = self.rows[: len(images)], self.rows[len(images) :]
        return np.stack(out).astype(np.float32)


def _photo(gps: tuple[float, float] | None = None) -> DecodedPhoto:
    return DecodedPhoto(Image.new("RGB", (64, 64)), PhotoMeta(64, 64, "JPEG", gps, None))


def test_the_gate_vetoes_an_acceptance_whose_logit_is_not_above_its_threshold() -> None:
    r = Recognizer(_bundle(), _Fixed([])).decide(np.stack([LANDMARK_WITHOUT_GATE]))[0]
    assert r.landmark_id is None and r.method == METHOD_NONE and r.matches == ()
    assert r.gate_vetoed and r.gate_logit == pytest.approx(-10 * 0.2 / np.sqrt(1.04), abs=1e-4)
    assert r.runner_up is not None and r.runner_up[0] == 1  # the vetoed candidate stays explainable
    assert r.score == pytest.approx(LANDMARK_WITHOUT_GATE[0])


def test_the_gate_lets_through_what_it_believes_and_leaves_rejections_alone() -> None:
    passed, rejected = Recognizer(_bundle(), _Fixed([])).decide(np.stack([LANDMARK_WITH_GATE, NOTHING]))
    assert passed.landmark_id == 1 and passed.method == METHOD_VERIFIED and not passed.gate_vetoed
    assert passed.gate_logit is not None and passed.gate_logit > 0
    assert rejected.landmark_id is None and not rejected.gate_vetoed and rejected.gate_logit == pytest.approx(0.0)


def test_a_logit_exactly_at_the_threshold_is_vetoed() -> None:
    at = replace(GATE, threshold=float(GATE.logits(LANDMARK_WITH_GATE[None, :])[0]))
    r = Recognizer(_bundle(at), _Fixed([])).decide(np.stack([LANDMARK_WITH_GATE]))[0]
    assert r.gate_vetoed and r.landmark_id is None


def test_the_gps_path_bypasses_the_gate() -> None:
    r = Recognizer(_bundle(), _Fixed([])).decide(np.stack([LANDMARK_WITHOUT_GATE]), [COLOSSEUM])[0]
    assert r.landmark_id == 1 and r.method == METHOD_GEO and not r.gate_vetoed
    assert r.gate_logit is not None and r.gate_logit < GATE.threshold  # the gate said no and was not asked


def test_without_a_gate_the_decision_is_unchanged() -> None:
    bundle = _bundle(None)
    rec = Recognizer(bundle, _Fixed([]))
    assert rec.gate is None
    queries = [LANDMARK_WITH_GATE, LANDMARK_WITHOUT_GATE, NOTHING]
    plain = [
        decide(
            q,
            None,
            centroids=rec.centroids,
            references=rec.references,
            geo=rec.geo,
            thresholds=bundle.thresholds,
            params=bundle.decision,
            model_version=bundle.version,
        )
        for q in queries
    ]
    got = rec.decide(np.stack(queries))
    assert got == plain
    assert [r.landmark_id for r in got] == [1, 1, None]
    assert all(r.gate_logit is None and not r.gate_vetoed for r in got)
    assert "gate" not in rec.describe(got[0])


def test_an_uncalibrated_gate_is_unused_and_a_misfit_one_refused() -> None:
    uncalibrated = Recognizer(_bundle(replace(GATE, threshold=None)), _Fixed([]))
    assert uncalibrated.gate is None
    assert uncalibrated.decide(np.stack([LANDMARK_WITHOUT_GATE]))[0].landmark_id == 1
    with pytest.raises(BundleIntegrityError, match="presence gate"):
        Recognizer(_bundle(PresenceGate(np.ones(DIM + 1, np.float32), 0.0, 0.0)), _Fixed([]))


def test_the_workers_path_gives_no_landmark_for_a_vetoed_photo(tmp_path: Path) -> None:
    """Through the bundle folder and ``recognize_photos`` (what the recognize task calls)."""
    bundle = load_bundle(save_bundle(_bundle(), tmp_path / "v-gate"))
    assert json.loads((tmp_path / "v-gate" / "manifest.json").read_text())["model"]["presence_gate"]["threshold"] == 0
    rec = Recognizer(bundle, _Fixed([LANDMARK_WITH_GATE, LANDMARK_WITHOUT_GATE, LANDMARK_WITHOUT_GATE]))
    kept, vetoed, located = rec.recognize_photos([_photo(), _photo(), _photo(COLOSSEUM)])
    assert [(m.landmark, m.method) for m in kept] == [("colosseum", METHOD_VERIFIED)]
    assert [(m.landmark, m.method) for m in vetoed] == [(None, METHOD_NONE)]
    assert [(m.landmark, m.method) for m in located] == [("colosseum", METHOD_GEO)]


def test_describe_and_the_evaluator_use_the_same_gated_decision() -> None:
    rec = Recognizer(_bundle(), _Fixed([]))
    queries = np.stack([LANDMARK_WITH_GATE, LANDMARK_WITHOUT_GATE, LANDMARK_WITHOUT_GATE])
    assert gated_predictions(rec, queries, [None, None, COLOSSEUM]) == ["colosseum", None, "colosseum"]
    info = rec.describe(rec.decide(queries[1:2])[0])
    assert info["landmark"] is None and info["method"] == METHOD_NONE
    assert info["gate"] == {"logit": pytest.approx(-1.9612, abs=1e-3), "threshold": 0.0, "vetoed": True}
    assert info["runner_up"]["landmark"] == "colosseum"


def test_recognize_json_shows_the_gate(tmp_path: Path) -> None:
    """`landmarks recognize --json` with a real network: a gate that says "no landmark" to everything."""
    from typer.testing import CliRunner

    from shared.model import Embedder, EmbedderConfig
    from workers.cli.main import app

    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8))
    embedder = Embedder(EmbedderConfig(image_size=64), device="cpu", threads=1)
    emb = embedder.embed([photo])
    gallery = np.concatenate([emb, l2_normalize(np.random.default_rng(1).standard_normal((1, emb.shape[1])))])
    bundle = Bundle(
        version="v-cli-gate",
        model={**embedder.describe(), "presence_gate": {"weight": [0.0] * emb.shape[1], "bias": -1.0, "threshold": 0}},
        thresholds=Thresholds(global_score=0.5, verification=0.5, geo=0.5),
        landmarks=(LandmarkInfo(1, "noise", "Noise"), LandmarkInfo(2, "other", "Other")),
        centroids=gallery,
        centroid_landmarks=np.array([1, 2]),
        references=gallery,
        reference_landmarks=np.array([1, 2]),
    )
    folder = save_bundle(bundle, tmp_path / "bundle")
    path = tmp_path / "photo.png"
    photo.save(path)

    result = CliRunner().invoke(app, ["recognize", str(path), "--bundle", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(next(s for s in result.stdout.splitlines() if s.startswith("{")))
    assert out["landmark"] is None and out["method"] == METHOD_NONE
    assert out["gate"] == {"logit": -1.0, "threshold": 0.0, "vetoed": True}
    assert out["runner_up"]["landmark"] == "noise"  # the rule accepted it (the photo is its own gallery)
