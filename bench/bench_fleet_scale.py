"""Photo-cloud scale: the reprocess feeder, the sweep and the operator queries over N photo rows.

Seeds N synthetic photo rows (``users/uNNNNNN/NNNNNNNNN.jpg``, 100 per user, statuses mixed, one user's
album of 100 photos) into a database of its own on the local PostgreSQL server (created and dropped here), then:

- the latency of ``status``'s photo counts (planner estimates above 200k rows), of ``reprocess --dry-run`` (one
  COUNT) and of a user's album page as the API reads it (median of repeats);
- a ``reprocess --all`` job fed in a child process onto a Redis database of its own with no consumer: after each
  feeding round the bench reads the queue length, then empties it (the workers draining), so the figure shows the
  queue never above the bound; the child's peak RSS and the time per million rows;
- the sweep in a child process over a fake listing of every seeded key (1 in 1000 missing, so lost deletes are
  found and, being over nothing, applied after a stat the fake answers): peak RSS, time per million keys.

Live-upload latency on the real stack while a job drains: bench_reprocess_drain.py.
Writes ``bench/results/fleet_scale.json``. ``--quick``: 200k rows. Run from the repository root:
``.venv/bin/python bench/bench_fleet_scale.py [--quick] [--rows N] [--feed-limit N] [--parts ...] [--out F]``
(``--feed-limit``: cancel the job after N messages, the time per million measured on them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from shared.settings import Settings, get_settings

RESULTS = Path(__file__).resolve().parent / "results" / "fleet_scale.json"
PER_USER = 100
SEED_CHUNK = 100_000
MISSING_EVERY = 1000  # the fake listing leaves out one key in this many (lost delete events)
PARTS = ("queries", "feeder", "sweep")


def factory_for(url: str) -> sessionmaker:
    from shared.db.session import make_engine, make_session_factory

    return make_session_factory(make_engine(url))


def key_of(i: int) -> str:
    return f"users/u{i // PER_USER:06d}/{i:09d}.jpg"


def seed(url: str, rows: int) -> float:
    t0 = time.perf_counter()
    factory = factory_for(url)
    with factory.begin() as session:
        session.execute(
            text("INSERT INTO users (name) SELECT 'u' || lpad(u::text, 6, '0') FROM generate_series(0, :n) u"),
            {"n": (rows - 1) // PER_USER},
        )
        session.execute(text("INSERT INTO landmarks (slug, name) VALUES ('bench_tower', 'Bench Tower')"))
    for start in range(0, rows, SEED_CHUNK):
        if start and start % 1_000_000 == 0:
            print(f"  seeded {start:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
        with factory.begin() as session:
            session.execute(
                text(
                    """
                    INSERT INTO photos (id, bucket, key, etag, size, owner_id, status, created_at, updated_at)
                    SELECT gen_random_uuid(), 'photos',
                           'users/u' || lpad((i / :per)::text, 6, '0') || '/' || lpad(i::text, 9, '0') || '.jpg',
                           'etag', 1000, u.id,
                           CASE WHEN i % 20 = 0 THEN 'failed' WHEN i % 50 = 1 THEN 'deleted' ELSE 'done' END,
                           timestamptz '2024-01-01' + i * interval '1 second', timestamptz '2024-01-01'
                    FROM generate_series(:lo, :hi) i
                    JOIN users u ON u.name = 'u' || lpad((i / :per)::text, 6, '0')
                    """
                ),
                {"lo": start, "hi": min(rows, start + SEED_CHUNK) - 1, "per": PER_USER},
            )
    with factory.begin() as session:
        session.execute(
            text(
                """
                WITH a AS (INSERT INTO albums (owner_id, landmark_id, photo_count)
                           SELECT u.id, l.id, :n FROM users u, landmarks l WHERE u.name = 'u000001' RETURNING id)
                INSERT INTO album_photos (album_id, photo_id, added_at)
                SELECT a.id, p.id, p.created_at FROM a, photos p
                WHERE p.key >= 'users/u000001/' AND p.key < 'users/u000002/'
                """
            ),
            {"n": PER_USER},
        )
    engine = factory.kw["bind"]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE photos")
        conn.exec_driver_sql("VACUUM ANALYZE album_photos")
    engine.dispose()
    return time.perf_counter() - t0


def timed(run, repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


def query_latencies(url: str) -> dict[str, Any]:
    from shared.ops import jobs
    from shared.ops.selectors import PhotoSelector
    from shared.ops.status import photo_counts, session_rows
    from workers.api.queries import album_page

    factory = factory_for(url)
    out: dict[str, Any] = {}
    with factory() as session:
        rows = session_rows(session)
        counts, approximate = photo_counts(rows)
        out["status_counts"] = {**timed(lambda: photo_counts(rows), 5), "approximate": approximate,
                                "counts": counts}  # fmt: skip
        out["dry_run_all"] = {**timed(lambda: jobs.count_selection(session, PhotoSelector(all=True)), 3),
                              "selected": jobs.count_selection(session, PhotoSelector(all=True))}  # fmt: skip
        out["dry_run_user"] = timed(lambda: jobs.count_selection(session, PhotoSelector(user="u000001")), 5)
        out["album_page"] = timed(lambda: album_page(session, "u000001", "bench_tower", limit=50), 20)
    return out


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux keeps that across exec, so a child spawned
    from a big parent would report the parent's size (a 10M-row run's parent reached 813 MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: an upper bound


def feeder_child(url: str, broker: str, bound: int, limit: int | None, result: Any) -> None:
    """Runs in its own process: a --all job fed round after round, the queue emptied between rounds; with
    ``limit`` the job is cancelled once that many messages were sent (the time per million is measured on them)."""
    import redis

    from shared.ops import jobs
    from shared.ops.selectors import PhotoSelector
    from tasks.priorities import REPROCESS_PRIORITY
    from workers.celery_app import make_celery
    from workers.fleet import priority_key, queue_depths, send_recognitions

    baseline = peak_rss_mb()  # the interpreter and the imports, before any work
    app = make_celery(Settings(broker_url=broker, result_backend=broker))
    client = redis.Redis.from_url(broker)
    factory = factory_for(url)
    with factory.begin() as session:
        job = jobs.create_job(session, PhotoSelector(all=True), priority=REPROCESS_PRIORITY, created_by="bench")

    def depth() -> int:
        return queue_depths(app, ["recognize"])[0].total

    send = partial(send_recognitions, app, priority=REPROCESS_PRIORITY)
    lengths, redis_mb = [], []
    t0 = time.perf_counter()
    while True:
        fed = jobs.feed_job(factory, job.id, depth=depth, enqueue=send, bound=bound)
        lengths.append(depth())
        redis_mb.append(client.info("memory")["used_memory"] / 2**20)
        for step in (0, 3, 6, 9):  # the workers drain the queue
            client.delete(priority_key("recognize", step))
        if fed.outcome == "finished":
            break
        with factory() as session:
            if limit is not None and jobs.get_job(session, job.id).enqueued >= limit:
                break
    elapsed = time.perf_counter() - t0
    with factory.begin() as session:
        enqueued = jobs.get_job(session, job.id).enqueued
        if fed.outcome != "finished":
            jobs.change_state(session, job.id, "cancel")
    result.put({"selected": job.total, "enqueued": enqueued, "finished": fed.outcome == "finished",
                "rounds": len(lengths), "bound": bound,
                "queue_max": max(lengths), "queue_lengths_sample": lengths[:: max(1, len(lengths) // 20)],
                "redis_used_memory_max_mb": round(max(redis_mb), 1), "seconds": round(elapsed, 1),
                "s_per_million": round(elapsed / max(1, enqueued) * 1e6, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1), "baseline_rss_mb": round(baseline, 1)})  # fmt: skip


def listing(rows: int, after: str | None) -> Iterator[Any]:
    from shared.storage import ObjectInfo

    for i in range(rows):
        key = key_of(i)
        if i % MISSING_EVERY == MISSING_EVERY - 1 or (after is not None and key <= after):
            continue
        yield ObjectInfo("photos", key, 1000, "etag", last_modified=datetime(2024, 1, 1, tzinfo=UTC))


def sweep_child(url: str, rows: int, page: int, result: Any) -> None:
    from shared.ops.sweep import sweep_bucket

    baseline = peak_rss_mb()
    sent: list[int] = [0]
    t0 = time.perf_counter()
    report = sweep_bucket(
        factory_for(url), "photos", list_after=partial(listing, rows), exists=lambda key: False,
        send_created=lambda info: sent.__setitem__(0, sent[0] + 1), requeue=lambda ids: None, page_size=page,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    result.put({**report.summary(), "seconds": round(elapsed, 1),
                "s_per_million": round(elapsed / max(1, report.listed) * 1e6, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1), "baseline_rss_mb": round(baseline, 1)})  # fmt: skip


def in_child(target, *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="200k rows")
    parser.add_argument("--bound", type=int, default=None, help="the feeder's queue bound (default: settings)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run after seeding")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where the figures go (default {RESULTS})")
    parser.add_argument("--feed-limit", type=int, default=None, help="stop the feeder after N messages (default: all)")
    args = parser.parse_args()
    rows = 200_000 if args.quick else args.rows
    settings = get_settings()
    from devtools.stack.testing import claim_redis_db, create_database, drop_database, release_redis_db

    url = create_database(settings.database_url, prefix="landmarks_bench")
    broker = claim_redis_db()
    try:
        seconds = seed(url, rows)
        print(f"seeded {rows} rows in {seconds:.1f} s")
        out: dict[str, Any] = {"rows": rows, "seed_s": round(seconds, 1)}
        if "queries" in args.parts:
            out["queries"] = query_latencies(url)
            print(json.dumps(out["queries"], indent=1))
        if "feeder" in args.parts:
            bound = args.bound or settings.reprocess_queue_bound
            out["feeder"] = in_child(feeder_child, url, broker, bound, args.feed_limit)
            print("feeder", json.dumps(out["feeder"]))
        if "sweep" in args.parts:
            out["sweep"] = in_child(sweep_child, url, rows, settings.sweep_page_size)
            print("sweep", json.dumps(out["sweep"]))
    finally:
        release_redis_db(broker)
        drop_database(url)
    out["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
