"""Photo-cloud scale: persisted reprocess jobs, the sweep's resumable cursor, a per-key event order on photos,
and the indexes behind the feeder's keyset pages, the sweep's merge join, the stuck-photo scan and album pages.

The indexes are built inside the migration's transaction (writes to photos wait for them): on a large table run
the migration in a quiet hour, or create them CONCURRENTLY by hand first under the same names.

Revision ID: 0010_reprocess_jobs
Revises: 0009_training_jobs
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_reprocess_jobs"
down_revision: str | None = "0009_training_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_STATES = ("running", "paused", "cancelled", "finished")


def upgrade() -> None:
    states = ", ".join(f"'{s}'" for s in JOB_STATES)
    op.create_table(
        "reprocess_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("selector", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("marker", sa.DateTime(timezone=True), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("cursor_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cursor_id", sa.Uuid(), nullable=True),
        sa.Column("enqueued", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reset", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"state IN ({states})", name=op.f("ck_reprocess_jobs_job_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reprocess_jobs")),
    )
    op.create_index(op.f("ix_reprocess_jobs_state"), "reprocess_jobs", ["state"], unique=False)
    op.create_table(
        "sweep_cursors",
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("after_key", sa.Text(), nullable=False),
        sa.Column("listed_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_sweep_cursors")),
    )
    op.add_column("photos", sa.Column("event_seq", sa.String(length=64), nullable=True))
    op.create_index("ix_photos_created_at_id", "photos", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_photos_unfinished_updated_at",
        "photos",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.create_index("ix_photos_bucket_key_c", "photos", ["bucket", sa.text('key COLLATE "C"')], unique=False)
    op.create_index("ix_album_photos_album_added", "album_photos", ["album_id", "added_at", "photo_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_album_photos_album_added", table_name="album_photos")
    op.drop_index("ix_photos_bucket_key_c", table_name="photos")
    op.drop_index("ix_photos_unfinished_updated_at", table_name="photos")
    op.drop_index("ix_photos_created_at_id", table_name="photos")
    op.drop_column("photos", "event_seq")
    op.drop_table("sweep_cursors")
    op.drop_index(op.f("ix_reprocess_jobs_state"), table_name="reprocess_jobs")
    op.drop_table("reprocess_jobs")
