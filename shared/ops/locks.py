"""Advisory locks that keep one feeder per job and one sweep per bucket, safe behind PgBouncer.

The lock is transaction-level (``pg_try_advisory_xact_lock``) and held by a transaction of its own that does
nothing else: PgBouncer's transaction mode pins one server connection to it, a killed process's lock goes with its
connection, and an idle READ COMMITTED transaction without writes holds back no vacuum.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

#: First halves of the two-int lock keys: which kind of work the second half names.
FEED_LOCK = 0x6C6D0001  # second half: the job id
SWEEP_LOCK = 0x6C6D0002  # second half: lock_key(bucket)


def lock_key(name: str) -> int:
    """A signed 32-bit key for a name (a bucket)."""
    value = zlib.crc32(name.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


@contextmanager
def advisory_lock(factory: sessionmaker[Session], namespace: int, key: int) -> Iterator[bool]:
    """Try the lock (never waits); yields whether it is held, until the block ends."""
    with factory() as session:
        held = bool(session.execute(select(func.pg_try_advisory_xact_lock(namespace, key))).scalar_one())
        try:
            yield held
        finally:
            # Commit, not roll back: the transaction wrote nothing, and under a test's shared connection a
            # rollback would also undo the work done in savepoints opened inside it.
            session.commit()
