"""The album schema. Enumerations are VARCHAR + CHECK (portable, cheap to extend in a migration)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db.enums import CorrectionKind, GalleryRole, JobState, ModelStatus, PhotoStatus, RecognitionMethod

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    # Opt-in: may this user's photos become gallery candidates (mining from uploads)?
    share_for_gallery: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    created_at: Mapped[datetime] = _now()


class City(Base):
    __tablename__ = "cities"
    __table_args__ = (UniqueConstraint("name", "country"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    country: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")


class Landmark(Base):
    __tablename__ = "landmarks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    city_id: Mapped[int | None] = mapped_column(ForeignKey("cities.id"), nullable=True)
    country: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    created_at: Mapped[datetime] = _now()

    city: Mapped[City | None] = relationship()


class GalleryPhoto(Base):
    """A photo used to build and clean the recognition model (never a user's album entry).

    Landmark photos have a landmark; ``negative`` and ``unknown_landmark`` photos (no landmark) have none and are
    unique by object.
    """

    __tablename__ = "gallery_photos"
    __table_args__ = (
        UniqueConstraint("landmark_id", "bucket", "key"),
        # NULLs are distinct in a unique constraint: negatives need their own (partial) unique index.
        Index(
            "uq_gallery_photos_negative_object",
            "bucket",
            "key",
            unique=True,
            postgresql_where=text("landmark_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    landmark_id: Mapped[int | None] = mapped_column(ForeignKey("landmarks.id", ondelete="CASCADE"), nullable=True)
    bucket: Mapped[str] = mapped_column(String(255), nullable=False)
    key: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[GalleryRole] = mapped_column(_enum(GalleryRole, "gallery_role"), nullable=False)
    cleaning_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(32), nullable=False, server_default="import")
    split: Mapped[str] = mapped_column(String(16), nullable=False, server_default="train")
    photo_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("photos.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()

    landmark: Mapped[Landmark] = relationship()


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    backbone: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[ModelStatus] = mapped_column(_enum(ModelStatus, "model_status"), nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    artifact_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _now()
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Photo(Base):
    """A user's upload, keyed by its object; its status is the single source of truth for processing."""

    __tablename__ = "photos"
    __table_args__ = (
        UniqueConstraint("bucket", "key"),
        Index("ix_photos_owner_status", "owner_id", "status"),
        # Reprocess jobs walk a selection in (created_at, id) order, one keyset page at a time.
        Index("ix_photos_created_at_id", "created_at", "id"),
        # The sweep finds photos whose task was lost: only unfinished rows, oldest update first.
        Index(
            "ix_photos_unfinished_updated_at",
            "updated_at",
            postgresql_where=text("status IN ('pending', 'processing')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    bucket: Mapped[str] = mapped_column(String(255), nullable=False)
    key: Mapped[str] = mapped_column(Text, nullable=False)
    etag: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int | None] = mapped_column(BigInteger)
    content_type: Mapped[str | None] = mapped_column(String(255))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[PhotoStatus] = mapped_column(
        _enum(PhotoStatus, "photo_status"), nullable=False, default=PhotoStatus.pending, index=True
    )
    error: Mapped[str | None] = mapped_column(Text)
    # Recognition runs begun and never ended (the worker died); shared.photos.recognize fails the photo as worker_lost
    # at recognition.max_deliveries instead of handing it to the next worker.
    delivery_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The storage's order of the last event applied to this key (S3 sequencer, SeaweedFS ts_ns), normalised by
    # shared.photos.records.event_order: an older event arriving late never undoes a newer one.
    event_seq: Mapped[str | None] = mapped_column(String(64))

    owner: Mapped[User | None] = relationship()
    model_version: Mapped[ModelVersion | None] = relationship()


class Recognition(Base):
    """One decision for a photo by one model version (rank 0 is the best; no landmark is a row too)."""

    __tablename__ = "recognitions"
    __table_args__ = (UniqueConstraint("photo_id", "model_version_id", "rank"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), nullable=False)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    landmark_id: Mapped[int | None] = mapped_column(ForeignKey("landmarks.id"))
    score: Mapped[float] = mapped_column(Float, nullable=False)
    method: Mapped[RecognitionMethod] = mapped_column(_enum(RecognitionMethod, "recognition_method"), nullable=False)
    verified: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    created_at: Mapped[datetime] = _now()

    landmark: Mapped[Landmark | None] = relationship()


class Album(Base):
    """A user's album for one landmark; ``photo_count`` always equals its membership rows."""

    __tablename__ = "albums"
    __table_args__ = (
        UniqueConstraint("owner_id", "landmark_id"),
        CheckConstraint("photo_count >= 0", name="photo_count_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    landmark_id: Mapped[int] = mapped_column(ForeignKey("landmarks.id"), nullable=False)
    photo_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    cover_photo_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("photos.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

    owner: Mapped[User] = relationship()
    landmark: Mapped[Landmark] = relationship()


class AlbumPhoto(Base):
    __tablename__ = "album_photos"

    album_id: Mapped[int] = mapped_column(ForeignKey("albums.id", ondelete="CASCADE"), primary_key=True)
    # Indexed on its own: the primary key leads with album_id, but every recognition and deletion looks a
    # photo's memberships up by photo_id (shared.photos.albums), and the ON DELETE CASCADE from photos does too.
    photo_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    score: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16), nullable=False, server_default="auto")
    added_at: Mapped[datetime] = _now()

    # An album page is newest first with a keyset cursor (workers.api.queries.album_page): one index range.
    __table_args__ = (Index("ix_album_photos_album_added", "album_id", "added_at", "photo_id"),)


class PhotoCorrection(Base):
    """A user's word on one (photo, landmark) pair, the latest one wins; automatic recognition never overrides it."""

    __tablename__ = "photo_corrections"
    __table_args__ = (UniqueConstraint("photo_id", "landmark_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), nullable=False)
    landmark_id: Mapped[int] = mapped_column(ForeignKey("landmarks.id", ondelete="CASCADE"), nullable=False, index=True)
    kind: Mapped[CorrectionKind] = mapped_column(_enum(CorrectionKind, "correction_kind"), nullable=False)
    client: Mapped[str | None] = mapped_column(String(255))  # the API client that recorded it
    created_at: Mapped[datetime] = _now()

    landmark: Mapped[Landmark] = relationship()


class TaskFailure(Base):
    """A permanent failure, recorded once with its reason so an operator can inspect and retry it."""

    __tablename__ = "task_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    bucket: Mapped[str | None] = mapped_column(String(255))
    key: Mapped[str | None] = mapped_column(Text)
    task_name: Mapped[str] = mapped_column(String(255), nullable=False)
    task_id: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    error_type: Mapped[str | None] = mapped_column(String(255))
    traceback: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[datetime] = _now()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EventCursor(Base):
    """Durable position of an event source (e.g. the SeaweedFS metadata stream, in ns since the epoch)."""

    __tablename__ = "event_cursors"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class SceneTag(Base):
    """A scene label (architecture, food, ...) of one photo by one model version; replaced when reprocessed."""

    __tablename__ = "scene_tags"
    __table_args__ = (
        UniqueConstraint("photo_id", "model_version_id", "label"),
        # Scene albums: a version's photos with a label.
        Index("ix_scene_tags_version_label", "model_version_id", "label"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), nullable=False)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), nullable=False)
    label: Mapped[str] = mapped_column(String(64), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[datetime] = _now()


class UiSession(Base):
    """A browser signed in to the album browser (/ui). Its cookie holds a random id; only the id's hash is kept
    here, with the client it signed in as (and that client's token hash, so rotating the token signs it out), the
    CSRF token its forms must carry, and when it expires."""

    __tablename__ = "ui_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client: Mapped[str] = mapped_column(String(255), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class TrainingJobStatus(enum.StrEnum):
    running = "running"
    done = "done"
    failed = "failed"


class TrainingJob(Base):
    """One training run, keyed by its task id: a redelivered training message finds its job and trains no second
    version (``shared.training.jobs``). The job is marked done in the transaction that registers its version."""

    __tablename__ = "training_jobs"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[TrainingJobStatus] = mapped_column(_enum(TrainingJobStatus, "training_job_status"), nullable=False)
    options: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# The sweep merges the bucket listing (byte order) with the photo rows: the same order, from an index.
Index("ix_photos_bucket_key_c", Photo.bucket, Photo.key.collate("C"))


class ReprocessJob(Base):
    """A persisted reprocessing request: its selection, where the feeder stands in it, and what it sent."""

    __tablename__ = "reprocess_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    selector: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False)
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), nullable=False, index=True)
    priority: Mapped[int] = mapped_column(Integer, nullable=False)
    # Database time at creation: photos created later are live uploads, not part of the job.
    marker: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    total: Mapped[int | None] = mapped_column(BigInteger)  # the selection's size when the job was created
    cursor_created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cursor_id: Mapped[uuid.UUID | None] = mapped_column()
    enqueued: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    reset: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SweepCursor(Base):
    """Where a running (or killed) sweep of a bucket stands: the next one resumes after ``after_key``."""

    __tablename__ = "sweep_cursors"

    bucket: Mapped[str] = mapped_column(String(255), primary_key=True)
    after_key: Mapped[str] = mapped_column(Text, nullable=False)
    listed_since: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
