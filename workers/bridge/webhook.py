"""HTTP receiver for MinIO-style bucket notifications (MinIO webhook target; RustFS and Ceph RGW alike).

FastAPI/uvicorn rather than ``http.server``: a threaded stdlib server would need hand-written request
parsing, limits and shutdown, and the albums API is a FastAPI app too. The answer means:
2xx = every event in the body is with the broker; 401 = bad token; 413 = body over the limit;
400 = not a notification (retrying will not help); 503 = the broker refused, MinIO retries later.
"""

from __future__ import annotations

import hmac
import json

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from workers.bridge.dispatch import Dispatch
from workers.bridge.sources.s3 import InvalidNotification, events_from_notification

DEFAULT_PATH = "/events"

log = structlog.get_logger("landmarks.bridge.webhook")


def token_matches(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>`` (what MinIO sends for ``auth_token``), compared in constant time."""
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest((authorization or "").encode(), expected)


def _error(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past ``limit`` (a missing or lying Content-Length)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_webhook_app(*, token: str, max_body_bytes: int, dispatch: Dispatch, path: str = DEFAULT_PATH) -> FastAPI:
    """The receiver app: POST notifications to ``path``; HEAD/GET on it answer MinIO's reachability probe."""
    if not token:
        raise ValueError("the webhook needs a non-empty token")
    app = FastAPI(title="landmarks event bridge", docs_url=None, redoc_url=None, openapi_url=None)

    @app.api_route(path, methods=["GET", "HEAD"])
    async def probe() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/healthz")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.post(path)
    async def receive(request: Request) -> JSONResponse:
        if not token_matches(request.headers.get("authorization"), token):
            log.warning("webhook.unauthorized", client=request.client.host if request.client else None)
            return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return _error(400, "invalid Content-Length")
            if int(declared) > max_body_bytes:
                return _error(413, f"body over {max_body_bytes} bytes")
        body = await _read_limited(request, max_body_bytes)
        if body is None:
            return _error(413, f"body over {max_body_bytes} bytes")
        if not body.strip():
            return JSONResponse({"accepted": 0})
        try:
            events = events_from_notification(json.loads(body))
        except (ValueError, InvalidNotification) as exc:  # JSONDecodeError is a ValueError
            return _error(400, f"not an S3 notification: {exc}")
        for event in events:
            try:
                await run_in_threadpool(dispatch, event.to_record())
            except Exception:
                log.exception("webhook.dispatch_failed", bucket=event.bucket, key=event.key)
                return _error(503, "could not hand the event to the broker", **{"Retry-After": "5"})
        return JSONResponse({"accepted": len(events)})

    return app
