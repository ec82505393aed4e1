"""The JSON the API answers with and accepts (these models are what /openapi.json describes)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class Cover(BaseModel):
    id: uuid.UUID
    url: str = Field(description="Presigned GET of the original object, valid for an hour.")
    thumbnail_url: str


class AlbumSummary(BaseModel):
    landmark: str = Field(description="The landmark's slug: the album's id in URLs.")
    name: str
    city: str
    country: str
    lat: float | None
    lon: float | None
    photo_count: int
    cover: Cover | None
    url: str = Field(description="This album's photos.")


class CityAlbums(BaseModel):
    city: str
    country: str
    albums: list[AlbumSummary]


class UserAlbums(BaseModel):
    user: str
    cities: list[CityAlbums]


class AlbumPhoto(BaseModel):
    id: uuid.UUID
    score: float | None = Field(description="The model's score for this landmark (manual entries may have none).")
    source: str = Field(description="auto: put there by recognition; manual: assigned by the user.")
    model_version: str | None
    added_at: datetime
    taken_at: datetime | None
    url: str
    thumbnail_url: str


class AlbumPage(BaseModel):
    user: str
    album: AlbumSummary
    photos: list[AlbumPhoto]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class RecognitionOut(BaseModel):
    landmark: str | None = Field(description="Slug; null when the model found no landmark.")
    landmark_name: str | None
    score: float
    method: str
    verified: bool
    rank: int
    model_version: str


class MembershipOut(BaseModel):
    landmark: str
    name: str
    source: str
    score: float | None


class CorrectionOut(BaseModel):
    landmark: str
    kind: str = Field(description="reject or assign")


class PhotoOut(BaseModel):
    id: uuid.UUID
    user: str
    status: str
    error: str | None
    taken_at: datetime | None
    lat: float | None
    lon: float | None
    width: int | None
    height: int | None
    model_version: str | None
    processed_at: datetime | None
    recognitions: list[RecognitionOut]
    albums: list[MembershipOut]
    corrections: list[CorrectionOut]
    scene_tags: list[str] = Field(description="Always empty for now: the fleet does not tag scenes yet.")
    url: str
    thumbnail_url: str


class RejectIn(BaseModel):
    landmark: str | None = Field(default=None, description="The album to leave; default: every album it is in.")


class AssignIn(BaseModel):
    landmark: str = Field(description="Slug of the landmark whose album the photo joins.")


class ReprocessJobOut(BaseModel):
    id: int
    state: str = Field(description="running, paused, cancelled or finished (every selected photo sent).")
    selector: dict = Field(description="What `landmarks reprocess` selected (user, since, until, status, ...).")
    total: int | None = Field(description="Photos selected when the job was created.")
    sent: int = Field(description="Photos the feeder has put on the recognize queue.")
    reset: int = Field(description="Failed photos set back to pending to be tried again.")
    processed: int | None = Field(
        None,
        description="Photos of the job finished since it began (an upper estimate, at most total); null in lists, "
        "and when counting took too long.",
    )
    remaining: int | None = Field(None, description="total - processed, when both are known.")
    created_by: str | None
    created_at: datetime
    finished_at: datetime | None
