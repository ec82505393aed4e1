"""Reprocessing's one write before a photo is sent again: a failed photo goes back to ``pending``.

The feeder (:mod:`shared.ops.jobs`) does it in the transaction that reads the page, committed before the page's
messages are sent (``claim_photo`` skips failed photos); a ``done`` photo stays visible in its albums until the
new result replaces it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.db.models import Photo, PhotoStatus


def reset_failed(session: Session, photo_ids: Sequence[uuid.UUID]) -> int:
    """Set the failed ones among ``photo_ids`` back to pending; their failure rows stay open until success."""
    if not photo_ids:
        return 0
    result = session.execute(
        update(Photo)
        .where(Photo.id.in_(list(photo_ids)), Photo.status == PhotoStatus.failed)
        .values(status=PhotoStatus.pending, error=None)
    )
    return result.rowcount or 0
