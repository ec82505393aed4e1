"""Recognition runs begun on a photo that never ended (its worker died: out of memory, a segfault).

Counted in the database, not in a worker's memory, because the worker that would remember is the one that died;
after ``recognition.max_deliveries`` of them the photo is failed with reason ``worker_lost`` instead of being
handed to the next worker. The count returns to 0 whenever a run ends.

Revision ID: 0007_delivery_count
Revises: 0006_gallery_unknown_landmarks
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_delivery_count"
down_revision: str | None = "0006_gallery_unknown_landmarks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("photos", sa.Column("delivery_count", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("photos", "delivery_count")
