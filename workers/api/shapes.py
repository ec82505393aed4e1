"""One album shape for every caller: the API's JSON and `landmarks albums --json` build it here, from the same
queries, differing only in how they spell addresses (a request's own URLs, or the API's configured address)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from minio import Minio

from shared.photos.albums import AlbumView
from workers.api import queries, schemas
from workers.api.deps import PRESIGN_TTL

THUMB_SIZE = 256


class Links(Protocol):
    """The addresses an album names."""

    def album(self, user: str, slug: str) -> str: ...

    def object(self, bucket: str, key: str) -> str: ...

    def thumbnail(self, photo_id: uuid.UUID) -> str: ...


@dataclass(frozen=True)
class ApiLinks:
    """Addresses under the API's base URL, objects presigned by ``presigner`` (for callers outside a request)."""

    base_url: str
    presigner: Minio

    def album(self, user: str, slug: str) -> str:
        return f"{self.base_url}/v1/users/{quote(user, safe='')}/albums/{quote(slug, safe='')}"

    def object(self, bucket: str, key: str) -> str:
        return self.presigner.presigned_get_object(bucket, key, expires=PRESIGN_TTL)

    def thumbnail(self, photo_id: uuid.UUID) -> str:
        return f"{self.base_url}/v1/photos/{photo_id}/thumb?size={THUMB_SIZE}"


def cover(links: Links, photo_id: uuid.UUID | str | None, objects: dict[uuid.UUID, tuple[str, str]]):
    if photo_id is None:
        return None
    pid = uuid.UUID(str(photo_id))
    bucket, key = objects[pid]
    return schemas.Cover(id=pid, url=links.object(bucket, key), thumbnail_url=links.thumbnail(pid))


def album_summary(
    links: Links, user: str, album: AlbumView | queries.AlbumInfo, covers: dict[uuid.UUID, tuple[str, str]]
) -> schemas.AlbumSummary:
    slug = album.landmark_slug if isinstance(album, AlbumView) else album.slug
    name = album.landmark_name if isinstance(album, AlbumView) else album.name
    return schemas.AlbumSummary(
        landmark=slug,
        name=name,
        city=album.city,
        country=album.country,
        lat=album.lat,
        lon=album.lon,
        photo_count=album.photo_count,
        cover=cover(links, album.cover_photo_id, covers),
        url=links.album(user, slug),
    )


def user_albums(links: Links, user: str, groups: list[queries.CityGroup], covers) -> schemas.UserAlbums:
    """What ``GET /v1/users/{user}/albums`` answers."""
    return schemas.UserAlbums(
        user=user,
        cities=[
            schemas.CityAlbums(
                city=g.city, country=g.country, albums=[album_summary(links, user, a, covers) for a in g.albums]
            )
            for g in groups
        ],
    )


def read_user_albums(session, links: Links, user: str) -> schemas.UserAlbums:
    """The user's albums by city, covers included, in two queries."""
    groups = queries.albums_by_city(session, user)
    covers = queries.cover_objects(session, [a.cover_photo_id for g in groups for a in g.albums])
    return user_albums(links, user, groups, covers)
