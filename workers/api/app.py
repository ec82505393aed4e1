"""The app factory: plain values in, a FastAPI app out (``landmarks api serve`` and the tests build it)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi_offline import FastAPIOffline
from minio import Minio
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.imaging import DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS
from shared.settings import ApiClient
from workers.api import routes_ops, routes_ui, routes_v1
from workers.api.auth import TokenTable
from workers.api.sessions import DEFAULT_TTL as DEFAULT_SESSION_TTL
from workers.api.thumbs import Thumbnailer

DESCRIPTION = """Landmark albums of a photo cloud's users, and the corrections users make to them.

Every call needs `Authorization: Bearer <token>` with a client token from `LANDMARKS_API_TOKENS`; a token is
served only the users it is allowed (`"*"`: all). Operator tokens (`"operator": true`) may also read `/v1/ops`
(reprocess jobs). The album browser lives under `/ui`.
"""


def create_app(
    *,
    session_factory: sessionmaker[Session],
    minio: Minio,
    clients: Mapping[str, ApiClient],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    presigner: Minio | None = None,
    session_ttl: timedelta = DEFAULT_SESSION_TTL,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> FastAPI:
    """The API and the album browser over one database and one S3 client; ``presigner`` signs the URLs handed
    to users for the storage's public address (default: ``minio``, whose address may be internal)."""
    # FastAPIOffline: Swagger UI (/docs) and ReDoc (/redoc) load their scripts from this server, not a CDN, so
    # the docs work where the API runs without Internet access.
    app = FastAPIOffline(title="landmarks albums API", version="1", description=DESCRIPTION)
    app.state.sessions = session_factory
    app.state.minio = minio
    app.state.presigner = presigner or minio
    app.state.tokens = TokenTable(clients)
    app.state.session_ttl = session_ttl
    app.state.thumbs = Thumbnailer(minio, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)
    app.include_router(routes_v1.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_ui.router)
    app.middleware("http")(routes_ui.sign_in_from_query)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Pages get a page (401: the sign-in form); the JSON API gets FastAPI's usual JSON."""
        if request.url.path.startswith(routes_ui.PREFIX + "/"):
            if exc.status_code == 401:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{routes_ui.PREFIX}/login?next={quote(target, safe='')}", status_code=303)
            return routes_ui.error_page(request, exc.status_code, str(exc.detail))
        return await http_exception_handler(request, exc)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(routes_ui.HOME, status_code=303)

    @app.get("/healthz", include_in_schema=False)
    def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app
