"""Gallery negatives: known non-landmark photos kept in the gallery (role ``negative``, no landmark).

They calibrate the threshold and train the "no landmark" class; a partial unique index keeps each object once.

Revision ID: 0002_gallery_negatives
Revises: 0001_album_schema
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_gallery_negatives"
down_revision: str | None = "0001_album_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ROLES = ("reference", "train", "candidate", "rejected")
NEW_ROLES = (*OLD_ROLES, "negative")
CHECK = "ck_gallery_photos_gallery_role"


def _role_check(values: tuple[str, ...]) -> None:
    op.drop_constraint(op.f(CHECK), "gallery_photos", type_="check")
    quoted = ", ".join(f"'{v}'" for v in values)
    op.create_check_constraint("gallery_role", "gallery_photos", f"role IN ({quoted})")


def upgrade() -> None:
    _role_check(NEW_ROLES)
    op.alter_column("gallery_photos", "landmark_id", existing_type=sa.Integer(), nullable=True)
    op.create_index(
        "uq_gallery_photos_negative_object",
        "gallery_photos",
        ["bucket", "key"],
        unique=True,
        postgresql_where=sa.text("landmark_id IS NULL"),
    )


def downgrade() -> None:
    op.execute("DELETE FROM gallery_photos WHERE landmark_id IS NULL")
    op.drop_index("uq_gallery_photos_negative_object", table_name="gallery_photos")
    op.alter_column("gallery_photos", "landmark_id", existing_type=sa.Integer(), nullable=False)
    _role_check(OLD_ROLES)
