"""Photo corrections: a user's reject or assign of one (photo, landmark) pair, which recognition never overrides.

Rejected pairs stay out of albums when the photo is processed again and are negative examples for training;
assigned pairs are manual album entries and positive candidates for the gallery.

Revision ID: 0004_photo_corrections
Revises: 0002_gallery_negatives
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_photo_corrections"
down_revision: str | None = "0002_gallery_negatives"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CORRECTION_KIND = ("reject", "assign")


def upgrade() -> None:
    op.create_table(
        "photo_corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("landmark_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(*CORRECTION_KIND, name="correction_kind", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("client", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], name=op.f("fk_photo_corrections_photo_id_photos"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["landmark_id"],
            ["landmarks.id"],
            name=op.f("fk_photo_corrections_landmark_id_landmarks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo_corrections")),
        sa.UniqueConstraint("photo_id", "landmark_id", name=op.f("uq_photo_corrections_photo_id_landmark_id")),
    )
    op.create_index(op.f("ix_photo_corrections_landmark_id"), "photo_corrections", ["landmark_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_photo_corrections_landmark_id"), table_name="photo_corrections")
    op.drop_table("photo_corrections")
