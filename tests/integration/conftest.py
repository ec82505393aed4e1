"""An isolated running stack for end-to-end tests: its own database, Redis database, `weed mini`, buckets and app
processes (Celery workers, the SeaweedFS bridge), with a small demo model active. See devtools/stack/testing.py.

The stack is module-scoped (it takes a minute to build); its processes are stopped however the module ends, and
a failing test prints the tail of every process log.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
from minio import Minio
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from devtools.stack.testing import DemoModel, IsolatedStack
from shared.db.models import Photo

# Reliably recognised by the demo model (other landmarks of the demo share its gallery to make it harder).
E2E_LANDMARKS = (
    "taj_mahal", "eiffel_tower", "colosseum", "brandenburg_gate", "great_pyramid_of_giza", "mount_rushmore",
    "statue_of_liberty", "christ_the_redeemer",
)  # fmt: skip
E2E_NEGATIVES = 30
T = TypeVar("T")
E2E_DEADLINE_S = 180.0  # generous: 2 shared cores also run the stack's workers
E2E_POLL_S = 0.2


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

    def upload(self, key: str, data: bytes, *, owner: str | None) -> str:
        """Put a photo into the photos bucket as a user's upload (``owner`` None: no user metadata); its etag."""
        metadata = {"user": owner} if owner else None
        result = self.minio.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg", metadata=metadata
        )
        return result.etag

    def photos_by_key(self, session: Session, keys: Iterable[str]) -> dict[str, Photo]:
        rows = session.execute(select(Photo).where(Photo.bucket == self.bucket, Photo.key.in_(list(keys)))).scalars()
        return {p.key: p for p in rows}

    def wait_until(self, check: Callable[[Session], T | None], what: str, timeout: float = E2E_DEADLINE_S) -> T:
        """Poll ``check`` in a fresh session until it returns something truthy; fail with ``what`` at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            with self.factory() as session:
                last = check(session)
                if last:
                    return last
            if time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what} after {timeout:g} s (last: {last!r})")
            time.sleep(E2E_POLL_S)


def _redis_server() -> str:
    parts = urlsplit(os.environ.get("LANDMARKS_BROKER_URL") or "redis://127.0.0.1:6379/0")
    return f"{parts.scheme}://{parts.netloc}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so a fixture can tell whether its test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@contextmanager
def demo_stack_on(pg_url: str, state: Path, redis_server: str) -> Iterator[RunningStack]:
    """The e2e stack (a claimed database of ``redis_server``, a new database, weed, the apps, the demo model)."""
    from devtools import demo_data
    from devtools.stack import testing

    if not demo_data.DEFAULT_RCC_DIR.is_dir():
        pytest.skip(f"{demo_data.DEFAULT_RCC_DIR} is absent: install Debian's {demo_data.DEBIAN_PACKAGE} (make test)")
    with (
        testing.isolated_resources(
            pg_url, state / "state", redis_server=redis_server, db_prefix="landmarks_e2e"
        ) as settings,
        testing.started_demo_stack(settings, state / "demo", landmarks=E2E_LANDMARKS, negatives=E2E_NEGATIVES) as up,
    ):
        yield RunningStack(up.stack, up.model, up.engine, up.factory, up.minio)


@pytest.fixture(scope="module")
def running_stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with demo_stack_on(pg_url, tmp_path_factory.mktemp("e2e-stack"), _redis_server()) as stack:
        yield stack


@pytest.fixture
def e2e(request: pytest.FixtureRequest, running_stack: RunningStack) -> Iterator[RunningStack]:
    """The module's stack; when the test failed, the tail of every process log goes to the report."""
    yield running_stack
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        sys.stderr.write(f"\n===== logs of the isolated stack =====\n{running_stack.stack.logs()}\n")
