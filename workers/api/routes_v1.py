"""``/v1``: albums, photos and corrections as JSON. Handlers are plain ``def``s (FastAPI runs them in a thread
pool) because the services and SQLAlchemy sessions are synchronous."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response

from shared.db.session import session_scope
from shared.errors import ServiceUnavailable
from shared.imaging import ImageDecodeError
from shared.photos import corrections
from shared.storage import ObjectMissing
from workers.api import queries, schemas, shapes
from workers.api.auth import Principal
from workers.api.deps import (
    PrincipalDep,
    SessionDep,
    check_user,
    check_writer,
    object_url,
    photo_url,
    thumbnail_url,
    visible_photo,
)
from workers.api.thumbs import SIZES, snap

router = APIRouter(prefix="/v1", tags=["albums"])

MAX_PAGE = 200


@dataclass(frozen=True)
class RequestLinks:
    """Addresses as this request reached the API; objects presigned for the storage's public address."""

    request: Request

    def album(self, user: str, slug: str) -> str:
        return str(self.request.url_for("album_photos", user=user, landmark=slug))

    def object(self, bucket: str, key: str) -> str:
        return object_url(self.request, bucket, key)

    def thumbnail(self, photo_id: uuid.UUID) -> str:
        return thumbnail_url(self.request, photo_id)


@router.get("/users/{user}/albums", response_model=schemas.UserAlbums, operation_id="list_albums")
def list_albums(user: str, request: Request, session: SessionDep, principal: PrincipalDep) -> schemas.UserAlbums:
    """The user's landmark albums grouped by city, each with its photo count and cover."""
    check_user(principal, user)
    return shapes.read_user_albums(session, RequestLinks(request), user)


@router.get("/users/{user}/albums/{landmark}", response_model=schemas.AlbumPage, name="album_photos")
def album_photos(
    user: str,
    landmark: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> schemas.AlbumPage:
    """One page of an album's photos, newest first, with the model's score and version for each."""
    check_user(principal, user)
    try:
        page = queries.album_page(session, user, landmark, limit=limit, cursor=cursor)
    except queries.InvalidCursor as exc:
        raise HTTPException(400, str(exc)) from exc
    if page is None:
        raise HTTPException(404, f"user {user!r} has no album for {landmark!r}")
    covers = queries.cover_objects(session, [page.album.cover_photo_id])
    return schemas.AlbumPage(
        user=user,
        album=shapes.album_summary(RequestLinks(request), user, page.album, covers),
        photos=[
            schemas.AlbumPhoto(
                id=e.photo.id,
                score=e.score,
                source=e.source,
                model_version=e.model_version,
                added_at=e.added_at,
                taken_at=e.photo.taken_at,
                url=photo_url(request, e.photo),
                thumbnail_url=thumbnail_url(request, e.photo.id),
            )
            for e in page.entries
        ],
        next_cursor=page.next_cursor,
    )


def photo_out(request: Request, detail: queries.PhotoDetail) -> schemas.PhotoOut:
    photo = detail.photo
    return schemas.PhotoOut(
        id=photo.id,
        user=detail.owner or "",
        status=str(photo.status),
        error=photo.error,
        taken_at=photo.taken_at,
        lat=photo.lat,
        lon=photo.lon,
        width=photo.width,
        height=photo.height,
        model_version=detail.model_version,
        processed_at=photo.processed_at,
        recognitions=[schemas.RecognitionOut(**vars(r)) for r in detail.recognitions],
        albums=[schemas.MembershipOut(**vars(m)) for m in detail.albums],
        corrections=[schemas.CorrectionOut(landmark=slug, kind=kind) for slug, kind in detail.corrections],
        scene_tags=detail.scene_tags,
        url=photo_url(request, photo),
        thumbnail_url=thumbnail_url(request, photo.id),
    )


@router.get("/photos/{photo_id}", response_model=schemas.PhotoOut, tags=["photos"])
def get_photo(photo_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep) -> schemas.PhotoOut:
    """Status, recognitions (every model version, newest first), albums, corrections and scene tags."""
    photo, owner = visible_photo(session, principal, photo_id)
    return photo_out(request, queries.photo_detail(session, photo, owner))


@router.get(
    "/photos/{photo_id}/thumb",
    name="photo_thumbnail",
    tags=["photos"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def photo_thumbnail(
    photo_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    size: Annotated[int, Query(ge=1, le=SIZES[-1], description=f"Snapped up to one of {SIZES}.")] = 256,
) -> Response:
    """A JPEG thumbnail made from the user's own object (cached in memory by eTag and size)."""
    return thumbnail_response(request, principal, photo_id, size)


def thumbnail_response(request: Request, principal: Principal, photo_id: uuid.UUID, size: int) -> Response:
    """The thumbnail for a client allowed to see the photo (the album browser's pages use it too)."""
    with session_scope(request.app.state.sessions) as session:  # closed before the S3 read and the resize
        photo, _ = visible_photo(session, principal, photo_id)
        bucket, key, etag = photo.bucket, photo.key, photo.etag
    try:
        data = request.app.state.thumbs.thumbnail(bucket, key, etag, size)
    except ObjectMissing as exc:
        raise HTTPException(404, f"the object of photo {photo_id} is gone") from exc
    except ImageDecodeError as exc:
        raise HTTPException(415, f"photo {photo_id} cannot be decoded: {exc.reason}") from exc
    except ServiceUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    headers = {"Cache-Control": "private, max-age=3600", "ETag": f'"{etag}-{snap(size)}"'}
    return Response(data, media_type="image/jpeg", headers=headers)


def _correction_error(exc: corrections.CorrectionError) -> HTTPException:
    if isinstance(exc, corrections.NotInAlbum):
        return HTTPException(409, str(exc))
    return HTTPException(404, str(exc))


@router.post("/photos/{photo_id}/reject", response_model=schemas.PhotoOut, tags=["corrections"])
def reject_photo(
    photo_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    body: Annotated[schemas.RejectIn | None, Body()] = None,
) -> schemas.PhotoOut:
    """Take the photo out of an album for good (it stays out when reprocessed) and record it as a negative
    example for training; without a landmark it leaves every album it is in (409 when it is in none)."""
    check_writer(principal)
    photo, owner = visible_photo(session, principal, photo_id)
    try:
        corrections.reject(session, photo_id, landmark=body.landmark if body else None, client=principal.client)
    except corrections.CorrectionError as exc:
        raise _correction_error(exc) from exc
    session.flush()
    return photo_out(request, queries.photo_detail(session, photo, owner))


@router.post("/photos/{photo_id}/assign", response_model=schemas.PhotoOut, tags=["corrections"])
def assign_photo(
    photo_id: uuid.UUID,
    body: schemas.AssignIn,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> schemas.PhotoOut:
    """Put the photo in a landmark's album by hand (a manual entry recognition never removes), recorded as a
    positive candidate for the gallery, subject to cleaning (only when the owner shares photos for the gallery)."""
    check_writer(principal)
    photo, owner = visible_photo(session, principal, photo_id)
    try:
        corrections.assign(session, photo_id, body.landmark, client=principal.client)
    except corrections.CorrectionError as exc:
        raise _correction_error(exc) from exc
    session.flush()
    return photo_out(request, queries.photo_detail(session, photo, owner))
