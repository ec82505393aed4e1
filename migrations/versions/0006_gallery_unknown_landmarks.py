"""Unknown-landmark photos in the gallery: the operator's photos of landmarks the gallery does not know (role
``unknown_landmark``, no landmark). Model builds turn every one of them away and calibrate the open-set score on
them beside the stand-ins made from the gallery; they never count as everyday negatives.

Revision ID: 0006_gallery_unknown_landmarks
Revises: 0005_scene_tags
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_gallery_unknown_landmarks"
down_revision: str | None = "0005_scene_tags"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ROLES = ("reference", "train", "candidate", "rejected", "negative")
NEW_ROLES = (*OLD_ROLES, "unknown_landmark")
CHECK = "ck_gallery_photos_gallery_role"


def _role_check(values: tuple[str, ...]) -> None:
    op.drop_constraint(op.f(CHECK), "gallery_photos", type_="check")
    quoted = ", ".join(f"'{v}'" for v in values)
    op.create_check_constraint("gallery_role", "gallery_photos", f"role IN ({quoted})")


def upgrade() -> None:
    _role_check(NEW_ROLES)


def downgrade() -> None:
    op.execute("DELETE FROM gallery_photos WHERE role = 'unknown_landmark'")
    _role_check(OLD_ROLES)
