"""bench/bench_scale.py's recall against exact search, distractor model and index builders on tiny cases."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches import each other this way

import bench_scale  # noqa: E402
from bench_scale import DistractorModel, build_flat, build_ivf, database_chunks, recall_at, synthetic_corpus  # noqa: E402


def test_recall_counts_the_overlap_of_top_k_lists() -> None:
    exact = np.array([[1, 2, 3, 4, 5], [7, 8, 9, 10, 11]])
    approx = np.array([[1, 3, 2, 40, 50], [8, 7, 9, 10, 11]])
    assert recall_at(exact, approx, 1) == pytest.approx(0.5)  # query 0 agrees on the nearest, query 1 not
    assert recall_at(exact, approx, 5) == pytest.approx((3 / 5 + 5 / 5) / 2)  # order inside the top-5 is free


def test_missing_results_never_count() -> None:
    exact = np.array([[4, -1]])
    approx = np.array([[-1, 4]])
    assert recall_at(exact, approx, 2) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        recall_at(np.zeros((0, 5), int), np.zeros((0, 5), int), 5)


def test_distractors_are_unit_vectors_like_the_fitted_ones() -> None:
    rng = np.random.default_rng(0)
    real = rng.standard_normal((200, 32)).astype(np.float32) + 3.0
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    fake = DistractorModel.fit(real, rank=8).sample(500, rng)
    assert fake.shape == (500, 32)
    assert np.allclose(np.linalg.norm(fake, axis=1), 1.0, atol=1e-5)
    assert float(fake.mean(axis=0) @ real.mean(axis=0)) > 0.8  # same region of the sphere, not uniform


def test_a_rung_starts_with_the_real_gallery_and_is_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_scale, "CHUNK", 300)
    corpus = synthetic_corpus(16)
    model = DistractorModel.fit(corpus.fit, rank=4)
    first = np.concatenate(list(database_chunks(corpus, model, 1700, seed=3)))
    again = np.concatenate(list(database_chunks(corpus, model, 1700, seed=3)))
    assert first.shape == (1700, 16)
    assert np.array_equal(first[: len(corpus.gallery)], corpus.gallery)
    assert np.array_equal(first, again)


def test_ivf_probing_every_list_matches_flat() -> None:
    corpus = synthetic_corpus(16)
    model = DistractorModel.fit(corpus.fit, rank=4)
    flat = build_flat(16, database_chunks(corpus, model, 2000, seed=0), fp16=False)
    _, exact = flat.index.search(corpus.queries, 5)
    ivf = build_ivf(16, 2000, database_chunks(corpus, model, 2000, seed=0), fp16=False)
    assert ivf.knob is not None
    ivf.knob(ivf.extra["nlist"])
    _, approx = ivf.index.search(corpus.queries, 5)
    assert recall_at(exact, approx, 5) == pytest.approx(1.0)
    assert flat.index.ntotal == ivf.index.ntotal == 2000
