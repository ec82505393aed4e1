"""Reprocess jobs over HTTP (`/v1/ops`, operator tokens only) and their progress as /metrics counts it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import JobState, Photo, PhotoStatus, ReprocessJob
from shared.ops import job_progress, jobs
from shared.ops.selectors import PhotoSelector
from shared.photos import records as photos
from shared.settings import ApiClient
from shared.storage import make_minio
from workers.api import create_app

pytestmark = pytest.mark.integration

USER = "ops-api-user"
CLIENTS = {
    "ops": ApiClient(token=SecretStr("token-ops"), users=[], operator=True),
    "everyone": ApiClient(token=SecretStr("token-everyone"), users=["*"]),
}
OPS = {"Authorization": "Bearer token-ops"}


@pytest.fixture
def client(session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    minio = make_minio("127.0.0.1:9", "api-test", "api-test-secret", region="us-east-1")  # presigning only
    with TestClient(create_app(session_factory=session_factory, minio=minio, clients=CLIENTS)) as test_client:
        yield test_client


@pytest.fixture
def two_jobs(db_session: Session) -> tuple[int, int, list[uuid.UUID]]:
    """A finished job and a running one over 5 photos, 2 of which a worker finished after the job began."""
    ids = [
        photos.record_created(
            db_session, bucket="ops", key=f"users/{USER}/{i}.jpg", etag="e", size=1, content_type=None, owner=USER
        ).photo_id  # fmt: skip
        for i in range(5)
    ]
    old = jobs.create_job(db_session, PhotoSelector(user=USER), priority=9, created_by="ops@h")
    old.state = JobState.finished
    job = jobs.create_job(db_session, PhotoSelector(user=USER), priority=9, created_by="ops@h")
    job.enqueued = 4
    db_session.flush()
    later = job.marker + timedelta(minutes=1)
    db_session.execute(update(Photo).where(Photo.id.in_(ids[:2])).values(status=PhotoStatus.done, updated_at=later))
    db_session.flush()
    return old.id, job.id, ids


def test_only_operator_tokens_read_jobs(client: TestClient, two_jobs) -> None:
    _, job_id, _ = two_jobs
    for path in ("/v1/ops/reprocess-jobs", f"/v1/ops/reprocess-jobs/{job_id}"):
        assert client.get(path).status_code == 401
        denied = client.get(path, headers={"Authorization": "Bearer token-everyone"})  # every user's albums: no jobs
        assert denied.status_code == 403 and "operator" in denied.json()["detail"]
        assert client.get(path, headers=OPS).status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/ops/reprocess-jobs", "/v1/ops/reprocess-jobs/{job_id}"} <= set(spec["paths"])


def test_jobs_are_listed_newest_first_and_one_job_shows_its_progress(client: TestClient, two_jobs) -> None:
    old_id, job_id, _ = two_jobs
    listed = client.get("/v1/ops/reprocess-jobs", headers=OPS).json()
    mine = [j for j in listed if j["id"] in (old_id, job_id)]
    assert [j["id"] for j in mine] == [job_id, old_id]
    assert mine[0]["state"] == "running" and mine[0]["total"] == 5 and mine[0]["sent"] == 4
    assert mine[0]["selector"] == {"user": USER} and mine[0]["created_by"] == "ops@h"
    assert mine[0]["processed"] is None  # lists stay cheap: no count per job
    live = client.get("/v1/ops/reprocess-jobs", params={"live": True}, headers=OPS).json()
    assert job_id in [j["id"] for j in live] and old_id not in [j["id"] for j in live]

    one = client.get(f"/v1/ops/reprocess-jobs/{job_id}", headers=OPS).json()
    assert (one["total"], one["sent"], one["processed"], one["remaining"]) == (5, 4, 2, 3)
    assert client.get("/v1/ops/reprocess-jobs/999999999", headers=OPS).status_code == 404


def test_metrics_read_jobs_per_state_and_live_progress(db_session: Session, two_jobs) -> None:
    old_id, job_id, _ = two_jobs
    by_state = job_progress.jobs_by_state(db_session)
    assert by_state["running"] >= 1 and by_state["finished"] >= 1 and set(by_state) >= {"paused", "cancelled"}
    [mine] = [p for p in job_progress.live_progress(db_session) if p.job.id == job_id]
    assert (mine.job.total, mine.job.enqueued, mine.processed, mine.remaining) == (5, 4, 2, 3)
    assert old_id not in [p.job.id for p in job_progress.live_progress(db_session)]


def test_a_count_past_its_timeout_is_left_out_and_the_session_goes_on(
    db_session: Session, two_jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, job_id, _ = two_jobs
    before = db_session.execute(text("SHOW statement_timeout")).scalar_one()

    def slow(session: Session, job: ReprocessJob) -> int:
        session.execute(text("SELECT pg_sleep(1)"))
        return 1

    monkeypatch.setattr(jobs, "processed_since", slow)
    assert job_progress.processed_count(db_session, job_id, timeout_ms=50) is None
    assert db_session.execute(text("SHOW statement_timeout")).scalar_one() == before  # restored with the savepoint
    assert db_session.execute(select(ReprocessJob.id).where(ReprocessJob.id == job_id)).scalar_one() == job_id
    monkeypatch.undo()
    assert job_progress.processed_count(db_session, job_id, timeout_ms=5000) == 2
    assert db_session.execute(text("SHOW statement_timeout")).scalar_one() == before
