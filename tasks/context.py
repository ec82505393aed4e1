"""Per-process runtime of a worker: settings, database sessions, S3 client and the active recognizer.

Created lazily on first use in each worker process (never in the parent before fork), so a child starts fast and
the model loads once per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from minio import Minio
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db.session import make_engine, make_session_factory, session_scope
from shared.model.accelerator import decode_threads, micro_batch_size
from shared.recognition.outcome import PhotoRecognizer
from shared.settings import Settings, get_settings
from shared.storage import make_minio
from shared.versions import registry

ACTIVE_VERSION_TTL_S = 2.0


@dataclass
class WorkerContext:
    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _recognizer: tuple[int, PhotoRecognizer] | None = None
    _checked_at: float = 0.0

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url, pool_size=2, max_overflow=2)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.session_factory) as session:
            yield session

    @cached_property
    def minio(self) -> Minio:
        s3 = self.settings.s3
        return make_minio(
            s3.endpoint, s3.access_key, s3.secret_key.get_secret_value(), secure=s3.secure, region=s3.region
        )

    def recognizer(self, expected: int | None = None) -> tuple[int, PhotoRecognizer]:
        """The active model version's recognizer; checks the active version at most every couple of seconds and
        loads a newly activated bundle once, so workers follow `landmarks model activate` without a restart.

        ``expected`` is the version a message was sent for (a reprocess job's messages name the version active
        when they were sent): when the loaded one differs, the database is asked at once instead of after the
        TTL, so a job started right after an activation is never recognised by the version it replaces. The
        active version still decides (a rollback since the message was sent wins).
        """
        with self._lock:
            now = time.monotonic()
            fresh = now - self._checked_at < ACTIVE_VERSION_TTL_S
            if self._recognizer is not None and fresh and expected in (None, self._recognizer[0]):
                return self._recognizer
            with self.session() as session:
                version = registry.active_version(session)
            if version is None:
                raise registry.NoActiveModel("no active model version: run `landmarks model build --activate`")
            if self._recognizer is None or self._recognizer[0] != version.id:
                rec = self.settings.recognition
                recognizer = registry.load_recognizer(
                    version,
                    self.minio,
                    self.settings.s3.models_bucket,
                    self.settings.model_store,
                    rec,
                    threads=rec.worker_threads,
                    # a micro-batch is one forward pass, however many photos it holds
                    batch_size=max(rec.batch_size, micro_batch_size(rec)),
                    preprocess_threads=self.decode_threads,
                )
                self._recognizer = (version.id, recognizer)
            self._checked_at = now
            return self._recognizer

    @cached_property
    def decode_threads(self) -> int:
        """Threads that fetch, decode and resize a micro-batch's photos (`recognition.decode_threads`)."""
        return decode_threads(self.settings.recognition)

    def reset_after_fork(self) -> None:
        """Drop connections inherited from the parent (SQLAlchemy pools must not cross fork)."""
        if "engine" in self.__dict__:
            self.engine.dispose(close=False)


_context: WorkerContext | None = None


def context() -> WorkerContext:
    global _context
    if _context is None:
        _context = WorkerContext(get_settings())
    return _context
