"""How the centroid index scales: Faiss flat vs IVF vs HNSW from 1k to 1M vectors of the real embedding dim.

Each rung holds the real train gallery's embeddings (the evaluator's on-disk cache under
``.landmarks/embeddings``, else the photos of ``../shared/data`` through ``shared.model.Embedder``) plus synthetic
distractors up to N. Distractors are drawn from a Gaussian fitted to the real train embeddings (mean, top
principal directions, residual noise) and L2-normalised: they crowd the same region of the sphere as real photos.
Uniform random unit vectors would not: in 1280 dims they are all orthogonal to every query and to each other,
which flatters recall and leaves IVF's clusters meaningless. The queries are the real test rows.

Per index: build time (train + add), resident memory it added, latency of one query and of a batch of 16
(median over repeats), and recall@1/@5 against the exact flat search (the overlap of the top-k lists). Flat is
``IndexFlatIP``, what ``shared.index.LandmarkIndex`` wraps, filled chunk by chunk so that 1M x 1280 float32
(5.1 GB) is never held twice. When memory is short for that, the 1M rung stores float16
(``IndexScalarQuantizer``) and says so. HNSW's build cost grows with N x dim; rungs above ``--hnsw-max`` run HNSW
on a PCA-256 projection (``--hnsw-pca-max``) or not at all, and the output says which.

Writes ``bench/results/scale.json`` and prints a table. ``--quick`` (< 1 min on 2 cores): 1k and 10k, HNSW at 1k.
Run from the repository root: ``.venv/bin/python bench/bench_scale.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from shared.index import l2_normalize

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = REPO.parent / "shared" / "data" / "manifest.csv"
CHUNK = 100_000  # distractors generated and added per step
MAX_NLIST = 1024  # IVF lists: 4 sqrt(N), capped (k-means on 4000 lists x 1280 dims is too slow on 2 cores)


# --------------------------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    """Real (or stand-in) vectors: the gallery every rung starts with, the queries, and what distractors mimic."""

    gallery: np.ndarray  # G x D unit vectors
    queries: np.ndarray  # Q x D unit vectors
    fit: np.ndarray  # vectors the distractor model is fitted on
    source: str


def real_corpus(manifest: Path) -> Corpus | None:
    """Train landmark rows as the gallery, test rows as queries, all train rows to fit distractors on."""
    from shared.evaluation.recognition import embed_rows
    from shared.gallery.manifest import read_eval_manifest
    from shared.model.factory import config_from_settings, embedder_from_settings
    from shared.settings import get_settings

    if not manifest.is_file():
        return None
    settings = get_settings()
    rec = settings.recognition
    config = config_from_settings(rec)
    rows = read_eval_manifest(manifest)
    embedder = embedder_from_settings(rec)
    cache = settings.state_dir / "embeddings" / embedder.cache_key()
    embedded = embed_rows(rows, embedder, cache_dir=cache, min_side=config.image_size, max_pixels=rec.max_pixels)
    e = l2_normalize(embedded.embeddings)
    train = np.array([r.split == "train" for r in rows])
    gallery = np.array([r.split == "train" and r.is_landmark for r in rows])
    source = f"{manifest} ({config.key()}, {len(rows) - embedded.embedded} from cache, {embedded.embedded} embedded)"
    return Corpus(gallery=e[gallery], queries=e[~train], fit=e[train], source=source)


def synthetic_corpus(dim: int, *, seed: int = 0) -> Corpus:
    """Stand-in when the photos are absent: 50 clusters of 20 vectors; queries are noisy copies of members."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim), dtype=np.float32)
    gallery = l2_normalize(np.repeat(centres, 20, axis=0) + 0.8 * rng.standard_normal((1000, dim), dtype=np.float32))
    queries = l2_normalize(gallery[::4] + 0.5 * rng.standard_normal((250, dim), dtype=np.float32) / math.sqrt(2))
    return Corpus(gallery=gallery, queries=queries, fit=gallery, source=f"synthetic clusters, dim {dim}")


@dataclass
class DistractorModel:
    """A Gaussian with the fitted vectors' mean, their top ``rank`` principal axes and isotropic residual noise."""

    mean: np.ndarray
    axes: np.ndarray  # rank x D, each scaled by its standard deviation
    residual_std: float

    @classmethod
    def fit(cls, x: np.ndarray, *, rank: int = 256) -> DistractorModel:
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        std = s / math.sqrt(max(len(x) - 1, 1))
        rank = min(rank, len(std))
        residual = float(np.sum(std[rank:] ** 2)) / x.shape[1]
        return cls(mean.astype(np.float32), (vt[:rank] * std[:rank, None]).astype(np.float32), math.sqrt(residual))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, len(self.axes)), dtype=np.float32)
        x = self.mean + z @ self.axes
        x += self.residual_std * rng.standard_normal(x.shape, dtype=np.float32)
        return l2_normalize(x)


def database_chunks(corpus: Corpus, model: DistractorModel, n: int, *, seed: int) -> Iterator[np.ndarray]:
    """The rung's N vectors in chunks: the real gallery first, then distractors (the same for the same seed)."""
    yield corpus.gallery[:n]
    rng = np.random.default_rng(seed)
    left = n - min(n, len(corpus.gallery))
    while left > 0:
        take = min(CHUNK, left)
        yield model.sample(take, rng)
        left -= take


# --------------------------------------------------------------------------------------------- measures


def recall_at(exact: np.ndarray, approx: np.ndarray, k: int) -> float:
    """Mean share of the exact top-``k`` ids that the approximate top-``k`` also returned (k-recall@k).

    At k=1 this is how often both agree on the nearest vector. Rows are queries; -1 (no result) never counts.
    """
    exact, approx = np.asarray(exact)[:, :k], np.asarray(approx)[:, :k]
    if len(exact) == 0:
        raise ValueError("no queries")
    hits = [len(set(e[e >= 0].tolist()) & set(a[a >= 0].tolist())) for e, a in zip(exact, approx, strict=True)]
    return float(np.mean(hits)) / k


def rss_bytes() -> int:
    """Resident memory of this process now (``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def serialized_mb(index: Any, raw_bytes: int, limit: int = 2**30) -> float | None:
    """The index's exact size as Faiss writes it; None above ``limit`` (serialising copies it whole)."""
    return None if raw_bytes > limit else faiss.serialize_index(index).nbytes / 2**20


def mem_available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def latency_ms(index: Any, queries: np.ndarray, batch: int, repeats: int, k: int = 5) -> tuple[float, float]:
    """Median and best wall time of one ``search`` call on ``batch`` queries (cycling through the real queries).

    The best of the repeats is the figure to compare across runs on a shared machine: the median carries
    whatever else the cores were doing.
    """
    times = []
    for r in range(repeats):
        start = (r * batch) % max(1, len(queries) - batch + 1)
        q = np.ascontiguousarray(queries[start : start + batch])
        t0 = time.perf_counter()
        index.search(q, k)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times)), 1e3 * float(np.min(times))


# --------------------------------------------------------------------------------------------- indexes


@dataclass
class Plan:
    sizes: tuple[int, ...]
    nprobes: tuple[int, ...]
    ef_searches: tuple[int, ...]
    hnsw_max: int  # full-dim HNSW up to this N
    hnsw_pca_max: int  # HNSW on a PCA projection up to this N
    single_repeats: int
    batch_repeats: int
    big: int = 300_000  # from this N on, fewer latency repeats (each flat search reads gigabytes)


QUICK = Plan((1_000, 10_000), (1, 4, 16, 64), (16, 64), 1_000, 0, 30, 6)
FULL = Plan((1_000, 10_000, 100_000, 1_000_000), (1, 4, 16, 64), (16, 64, 256), 10_000, 100_000, 50, 10)


@dataclass
class Built:
    index: Any
    build_s: float
    memory_bytes: int
    note: str = ""
    knob: Callable[[int], None] | None = None  # sets nprobe / efSearch
    extra: dict[str, Any] = field(default_factory=dict)


def fill(index: Any, chunks: Iterator[np.ndarray], train_size: int = 0) -> tuple[float, int]:
    """Train on the first ``train_size`` vectors (when the index needs training), add all; (seconds, bytes)."""
    before = rss_bytes()
    t0 = time.perf_counter()
    pending: list[np.ndarray] = []
    trained = index.is_trained
    for chunk in chunks:
        if trained:
            index.add(chunk)
            continue
        pending.append(chunk)
        if sum(len(c) for c in pending) >= train_size:
            sample = np.concatenate(pending)
            index.train(sample[:train_size])
            trained = True
            for c in pending:
                index.add(c)
            pending = []
    if pending:  # fewer vectors than the training size
        sample = np.concatenate(pending)
        index.train(sample)
        index.add(sample)
    return time.perf_counter() - t0, max(0, rss_bytes() - before)


def nlist_for(n: int) -> int:
    return max(1, min(MAX_NLIST, int(4 * math.sqrt(n))))


def build_flat(dim: int, chunks: Iterator[np.ndarray], *, fp16: bool) -> Built:
    if fp16:
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexFlatIP(dim)
    seconds, memory = fill(index, chunks, train_size=1)
    return Built(index, seconds, memory, note="fp16" if fp16 else "")


def build_ivf(dim: int, n: int, chunks: Iterator[np.ndarray], *, fp16: bool) -> Built:
    nlist = nlist_for(n)
    quantizer = faiss.IndexFlatIP(dim)
    if fp16:
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.min_points_per_centroid = 1  # small rungs: fewer than 39 points per list is fine here
    seconds, memory = fill(index, chunks, train_size=min(n, 40 * nlist))
    built = Built(index, seconds, memory, note=f"nlist {nlist}" + (", fp16" if fp16 else ""))
    built.extra = {"quantizer": quantizer, "nlist": nlist}

    def set_nprobe(value: int) -> None:
        index.nprobe = value

    built.knob = set_nprobe
    return built


def build_hnsw(
    dim: int, chunks: Iterator[np.ndarray], *, pca: int | None, m: int = 16, ef_construction: int = 40
) -> Built:
    if pca:
        hnsw = faiss.IndexHNSWFlat(pca, m, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexPreTransform(faiss.PCAMatrix(dim, pca), hnsw)
        train_size = 20_000
    else:
        hnsw = index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        train_size = 1
    hnsw.hnsw.efConstruction = ef_construction
    seconds, memory = fill(index, chunks, train_size=train_size)
    built = Built(index, seconds, memory, note=f"M {m}, efC {ef_construction}" + (f", PCA-{pca}" if pca else ""))
    built.extra = {"hnsw": hnsw}

    def set_ef(value: int) -> None:
        hnsw.hnsw.efSearch = value

    built.knob = set_ef
    return built


# --------------------------------------------------------------------------------------------- the run


def measure(
    kind: str, built: Built, corpus: Corpus, exact: np.ndarray | None, n: int, plan: Plan, knob: int | None
) -> dict[str, Any]:
    if knob is not None and built.knob:
        built.knob(knob)
    repeats = (plan.single_repeats, plan.batch_repeats) if n < plan.big else (5, 2)
    single = latency_ms(built.index, corpus.queries, 1, repeats[0])
    batch = latency_ms(built.index, corpus.queries, 16, repeats[1])
    row: dict[str, Any] = {
        "n": n,
        "index": kind,
        "knob": knob,
        "note": built.note,
        "build_s": built.build_s,
        "memory_mb": built.memory_bytes / 2**20,
        "serialized_mb": serialized_mb(built.index, n * corpus.gallery.shape[1] * 4),
        "single_ms": single[0],
        "single_best_ms": single[1],
        "batch16_ms": batch[0],
        "batch16_best_ms": batch[1],
    }
    if exact is not None:
        _, approx = built.index.search(corpus.queries, 5)
        row["recall@1"] = recall_at(exact, approx, 1)
        row["recall@5"] = recall_at(exact, approx, 5)
    return row


def log_row(console: Console, row: dict[str, Any]) -> None:
    recall = f", R@1 {row['recall@1']:.3f} R@5 {row['recall@5']:.3f}" if "recall@1" in row else ""
    console.log(
        f"{row['n']:,} {row['index']} {fmt(row['knob'])}: build {row['build_s']:.1f} s, "
        f"1 query {row['single_ms']:.2f} ms, 16 queries {row['batch16_ms']:.2f} ms{recall}"
    )


def run_rung(
    corpus: Corpus, model: DistractorModel, n: int, plan: Plan, console: Console, *, seed: int
) -> list[dict[str, Any]]:
    dim = corpus.gallery.shape[1]
    need = n * dim * 4
    fp16 = need * 1.5 + 2**30 > mem_available_bytes()
    if fp16:
        console.print(
            f"[yellow]{n}: {need / 2**30:.1f} GB float32 does not fit in the free memory "
            f"({mem_available_bytes() / 2**30:.1f} GB): flat and IVF store float16 at this size[/]"
        )
    rows: list[dict[str, Any]] = []

    flat = build_flat(dim, database_chunks(corpus, model, n, seed=seed), fp16=fp16)
    _, exact = flat.index.search(corpus.queries, 5)  # ground truth for the approximate indexes
    rows.append(measure("flat", flat, corpus, None, n, plan, None))
    log_row(console, rows[-1])
    del flat

    ivf = build_ivf(dim, n, database_chunks(corpus, model, n, seed=seed), fp16=fp16)
    for nprobe in plan.nprobes:
        if nprobe <= ivf.extra["nlist"]:
            rows.append(measure("ivf", ivf, corpus, exact, n, plan, nprobe))
            log_row(console, rows[-1])
    del ivf

    pca = None if n <= plan.hnsw_max else (256 if n <= plan.hnsw_pca_max else 0)
    if pca == 0:
        rows.append({"n": n, "index": "hnsw", "note": "skipped: build too slow here (see README)"})
        console.print(f"[yellow]{n}: HNSW skipped (build cost grows with N x dim; --hnsw-pca-max to force)[/]")
        return rows
    hnsw = build_hnsw(dim, database_chunks(corpus, model, n, seed=seed), pca=pca)
    for ef in plan.ef_searches:
        rows.append(measure("hnsw", hnsw, corpus, exact, n, plan, ef))
        log_row(console, rows[-1])
    return rows


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, RAM and load: figures from a shared 2-core box mean little without them."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_total = next(
        int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gb": round(mem_total / 2**30, 1),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
    }


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="Faiss index scale (real queries; gallery + fitted distractors)")
    for col in (
        "N",
        "index",
        "nprobe/ef",
        "note",
        "build s",
        "RSS+ MB",
        "size MB",
        "1 query ms med/best",
        "16 queries ms med/best",
        "R@1",
        "R@5",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['n']:,}", r["index"], fmt(r.get("knob")), r.get("note", ""), fmt(r.get("build_s"), 1),
            fmt(r.get("memory_mb"), 0), fmt(r.get("serialized_mb"), 0),
            f"{fmt(r.get('single_ms'))} / {fmt(r.get('single_best_ms'))}",
            f"{fmt(r.get('batch16_ms'))} / {fmt(r.get('batch16_best_ms'))}",
            fmt(r.get("recall@1"), 3), fmt(r.get("recall@5"), 3),
        )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1k and 10k, HNSW at 1k only (< 1 min on 2 cores)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="eval manifest of the real photos")
    parser.add_argument("--sizes", nargs="*", type=int, default=None, help="index sizes (default: plan's)")
    parser.add_argument("--hnsw-max", type=int, default=None, help="largest N for full-dim HNSW")
    parser.add_argument("--hnsw-pca-max", type=int, default=None, help="largest N for HNSW on PCA-256")
    parser.add_argument("--dim", type=int, default=1280, help="dim of the synthetic stand-in (no real photos)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="Faiss OpenMP threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    plan.sizes = tuple(args.sizes) if args.sizes else plan.sizes
    plan.hnsw_max = plan.hnsw_max if args.hnsw_max is None else args.hnsw_max
    plan.hnsw_pca_max = plan.hnsw_pca_max if args.hnsw_pca_max is None else args.hnsw_pca_max
    console = Console(width=200)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    t0 = time.perf_counter()
    corpus = real_corpus(args.manifest)
    if corpus is None:
        console.print(f"[yellow]{args.manifest} is absent: recall uses synthetic clusters, not real embeddings[/]")
        corpus = synthetic_corpus(args.dim, seed=args.seed)
    model = DistractorModel.fit(corpus.fit)
    console.print(
        f"{corpus.source}: gallery {corpus.gallery.shape}, queries {len(corpus.queries)}, "
        f"loaded in {time.perf_counter() - t0:.1f} s; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads"
    )
    rows: list[dict[str, Any]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def report(done: list[int]) -> dict[str, Any]:
        return {
            "bench": "scale",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "sizes_done": done,
            "sizes_planned": list(plan.sizes),
            "machine": machine_info(),
            "faiss": {"version": faiss.__version__, "threads": faiss.omp_get_max_threads()},
            "corpus": {"source": corpus.source, "gallery": len(corpus.gallery), "queries": len(corpus.queries)},
            "dim": int(corpus.gallery.shape[1]),
            "wall_s": time.perf_counter() - t0,
            "results": rows,
        }

    done: list[int] = []
    for n in plan.sizes:
        rows.extend(run_rung(corpus, model, n, plan, console, seed=args.seed))
        done.append(n)
        args.out.write_text(json.dumps(report(done), indent=2))  # a run stopped later keeps the finished rungs
    print_table(console, rows)
    console.print(f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
