"""Scene tags: per photo and model version, the scene labels (architecture, food, ...) above the tag threshold.

Revision ID: 0005_scene_tags
Revises: 0004_photo_corrections
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_scene_tags"
down_revision: str | None = "0004_photo_corrections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scene_tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], name=op.f("fk_scene_tags_photo_id_photos"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_versions.id"], name=op.f("fk_scene_tags_model_version_id_model_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scene_tags")),
        sa.UniqueConstraint(
            "photo_id", "model_version_id", "label", name=op.f("uq_scene_tags_photo_id_model_version_id_label")
        ),
    )
    op.create_index("ix_scene_tags_version_label", "scene_tags", ["model_version_id", "label"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_scene_tags_version_label", table_name="scene_tags")
    op.drop_table("scene_tags")
