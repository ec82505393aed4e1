"""An isolated running stack for end-to-end tests: its own database, Redis database, `weed mini`, buckets and app
processes (Celery workers, the SeaweedFS bridge), with a small demo model active. See workers/devstack/testing.py.

The stack is module-scoped (it takes a minute to build); its processes are stopped however the module ends, and
a failing test prints the tail of every process log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from minio import Minio
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from workers.devstack.testing import DemoModel, IsolatedStack

# Reliably recognised by the demo model (other landmarks of the demo share its gallery to make it harder).
E2E_LANDMARKS = (
    "taj_mahal", "eiffel_tower", "colosseum", "brandenburg_gate", "great_pyramid_of_giza", "mount_rushmore",
    "statue_of_liberty", "christ_the_redeemer",
)  # fmt: skip
E2E_NEGATIVES = 30


@dataclass
class RunningStack:
    stack: IsolatedStack
    model: DemoModel
    engine: Engine
    factory: sessionmaker[Session]
    minio: Minio

    @property
    def bucket(self) -> str:
        return self.stack.settings.s3.photos_bucket

    def upload_dir(self) -> Path:
        return self.model.data.out_dir / "uploads"


def _redis_server() -> str:
    parts = urlsplit(os.environ.get("LANDMARKS_BROKER_URL") or "redis://127.0.0.1:6379/0")
    return f"{parts.scheme}://{parts.netloc}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so a fixture can tell whether its test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def running_stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    from shared.db.session import make_engine, make_session_factory
    from shared.storage import make_minio
    from workers import demo_data
    from workers.devstack import testing

    if not demo_data.DEFAULT_RCC_DIR.is_dir():
        pytest.skip(f"{demo_data.DEFAULT_RCC_DIR} is absent: install Debian's {demo_data.DEBIAN_PACKAGE} (make test)")
    try:
        redis_url = testing.claim_redis_db(_redis_server())
    except testing.StackError as exc:
        pytest.fail(f"end-to-end tests need Redis: {exc}", pytrace=False)
    database_url = ""
    try:
        database_url = testing.create_database(pg_url)
        state = tmp_path_factory.mktemp("e2e-stack")
        settings = testing.isolated_settings(state / "state", database_url=database_url, redis_url=redis_url)
        with testing.isolated_stack(settings, start=False) as stack:
            try:
                model = testing.build_demo_model(
                    settings, state / "demo", landmarks=E2E_LANDMARKS, negatives=E2E_NEGATIVES
                )
                stack.start(*stack.apps)
            except Exception:
                sys.stderr.write(stack.logs())
                raise
            engine = make_engine(database_url)
            s3 = settings.s3
            client = make_minio(s3.endpoint, s3.access_key, s3.secret_key.get_secret_value(), secure=s3.secure)
            try:
                yield RunningStack(stack, model, engine, make_session_factory(engine), client)
            finally:
                engine.dispose()
    finally:
        testing.release_redis_db(redis_url)
        if database_url:
            testing.drop_database(database_url)


@pytest.fixture
def e2e(request: pytest.FixtureRequest, running_stack: RunningStack) -> Iterator[RunningStack]:
    """The module's stack; when the test failed, the tail of every process log goes to the report."""
    yield running_stack
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        sys.stderr.write(f"\n===== logs of the isolated stack =====\n{running_stack.stack.logs()}\n")
