"""The album schema: users, cities, landmarks, gallery, model versions, photos, recognitions, albums,
failures and event cursors.

Enumerations are VARCHAR(16) + a named CHECK (``ck_<table>_<enum>``), so adding a value later is a
drop-and-recreate of one constraint, not an ALTER TYPE. Their values are spelled out here, not imported from
the models: this file must keep describing the schema as it was when written.

Revision ID: 0001_album_schema
Revises:
Create Date: 2026-11-25 11:59:43.275549+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_album_schema"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


PHOTO_STATUS = ("pending", "processing", "done", "failed", "deleted")
GALLERY_ROLE = ("reference", "train", "candidate", "rejected")
MODEL_STATUS = ("training", "ready", "active", "retired", "failed")
RECOGNITION_METHOD = ("geo", "global+verified", "none", "manual")


def _enum(values: tuple[str, ...], name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "cities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("country", sa.String(length=255), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cities")),
        sa.UniqueConstraint("name", "country", name=op.f("uq_cities_name_country")),
    )
    op.create_table(
        "event_cursors",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_event_cursors")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("backbone", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            _enum(MODEL_STATUS, "model_status"),
            nullable=False,
        ),
        sa.Column(
            "metrics",
            postgresql.JSONB(),
            nullable=False,
        ),
        sa.Column(
            "thresholds",
            postgresql.JSONB(),
            nullable=False,
        ),
        sa.Column("artifact_uri", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("version", name=op.f("uq_model_versions_version")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("share_for_gallery", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "landmarks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("city_id", sa.Integer(), nullable=True),
        sa.Column("country", sa.String(length=255), server_default="", nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["city_id"], ["cities.id"], name=op.f("fk_landmarks_city_id_cities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_landmarks")),
        sa.UniqueConstraint("slug", name=op.f("uq_landmarks_slug")),
    )
    op.create_table(
        "photos",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(length=128), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            _enum(PHOTO_STATUS, "photo_status"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_photos_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_photos_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photos")),
        sa.UniqueConstraint("bucket", "key", name=op.f("uq_photos_bucket_key")),
    )
    op.create_index(op.f("ix_photos_owner_id"), "photos", ["owner_id"], unique=False)
    op.create_index("ix_photos_owner_status", "photos", ["owner_id", "status"], unique=False)
    op.create_index(op.f("ix_photos_status"), "photos", ["status"], unique=False)
    op.create_table(
        "albums",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("landmark_id", sa.Integer(), nullable=False),
        sa.Column("photo_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cover_photo_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("photo_count >= 0", name=op.f("ck_albums_photo_count_nonnegative")),
        sa.ForeignKeyConstraint(
            ["cover_photo_id"],
            ["photos.id"],
            name=op.f("fk_albums_cover_photo_id_photos"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["landmark_id"], ["landmarks.id"], name=op.f("fk_albums_landmark_id_landmarks")),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_albums_owner_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_albums")),
        sa.UniqueConstraint("owner_id", "landmark_id", name=op.f("uq_albums_owner_id_landmark_id")),
    )
    op.create_table(
        "gallery_photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("landmark_id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column(
            "role",
            _enum(GALLERY_ROLE, "gallery_role"),
            nullable=False,
        ),
        sa.Column("cleaning_score", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=32), server_default="import", nullable=False),
        sa.Column("split", sa.String(length=16), server_default="train", nullable=False),
        sa.Column("photo_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["landmark_id"],
            ["landmarks.id"],
            name=op.f("fk_gallery_photos_landmark_id_landmarks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], name=op.f("fk_gallery_photos_photo_id_photos"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gallery_photos")),
        sa.UniqueConstraint("landmark_id", "bucket", "key", name=op.f("uq_gallery_photos_landmark_id_bucket_key")),
    )
    op.create_table(
        "recognitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), server_default="0", nullable=False),
        sa.Column("landmark_id", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column(
            "method",
            _enum(RECOGNITION_METHOD, "recognition_method"),
            nullable=False,
        ),
        sa.Column("verified", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["landmark_id"], ["landmarks.id"], name=op.f("fk_recognitions_landmark_id_landmarks")),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_recognitions_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], name=op.f("fk_recognitions_photo_id_photos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recognitions")),
        sa.UniqueConstraint(
            "photo_id",
            "model_version_id",
            "rank",
            name=op.f("uq_recognitions_photo_id_model_version_id_rank"),
        ),
    )
    op.create_table(
        "task_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Uuid(), nullable=True),
        sa.Column("bucket", sa.String(length=255), nullable=True),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("task_name", sa.String(length=255), nullable=False),
        sa.Column("task_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("error_type", sa.String(length=255), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], name=op.f("fk_task_failures_photo_id_photos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_failures")),
    )
    op.create_index(op.f("ix_task_failures_photo_id"), "task_failures", ["photo_id"], unique=False)
    op.create_table(
        "album_photos",
        sa.Column("album_id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=16), server_default="auto", nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["album_id"], ["albums.id"], name=op.f("fk_album_photos_album_id_albums"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], name=op.f("fk_album_photos_photo_id_photos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("album_id", "photo_id", name=op.f("pk_album_photos")),
    )
    op.create_index(op.f("ix_album_photos_photo_id"), "album_photos", ["photo_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_album_photos_photo_id"), table_name="album_photos")
    op.drop_table("album_photos")
    op.drop_index(op.f("ix_task_failures_photo_id"), table_name="task_failures")
    op.drop_table("task_failures")
    op.drop_table("recognitions")
    op.drop_table("gallery_photos")
    op.drop_table("albums")
    op.drop_index(op.f("ix_photos_status"), table_name="photos")
    op.drop_index("ix_photos_owner_status", table_name="photos")
    op.drop_index(op.f("ix_photos_owner_id"), table_name="photos")
    op.drop_table("photos")
    op.drop_table("landmarks")
    op.drop_table("users")
    op.drop_table("model_versions")
    op.drop_table("event_cursors")
    op.drop_table("cities")
