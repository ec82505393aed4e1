"""The schema's enumerations, apart from the SQLAlchemy models: the CLI offers them as choices (`landmarks
reprocess --status`) without paying for SQLAlchemy at start."""

from __future__ import annotations

import enum


class PhotoStatus(enum.StrEnum):
    pending = "pending"
    processing = "processing"
    done = "done"
    failed = "failed"
    deleted = "deleted"


class GalleryRole(enum.StrEnum):
    reference = "reference"
    train = "train"
    candidate = "candidate"
    rejected = "rejected"
    negative = "negative"  # a known non-landmark photo: calibrates the threshold, trains the "no landmark" class
    unknown_landmark = "unknown_landmark"  # a landmark the gallery does not know: calibrates the open-set score


class ModelStatus(enum.StrEnum):
    training = "training"
    ready = "ready"
    active = "active"
    retired = "retired"
    failed = "failed"


class RecognitionMethod(enum.StrEnum):
    geo = "geo"
    verified = "global+verified"
    none = "none"
    manual = "manual"


class CorrectionKind(enum.StrEnum):
    reject = "reject"  # "not this landmark": out of the album for good, a negative example for training
    assign = "assign"  # "this landmark": a manual album entry, a positive candidate for the gallery


class JobState(enum.StrEnum):
    """A reprocess job's state (``shared.ops.jobs``)."""

    running = "running"
    paused = "paused"
    cancelled = "cancelled"
    finished = "finished"  # every selected photo was enqueued
