"""The webhook receiver driven in-process through ASGI (no sockets): auth, body limit, ping, dispatch-then-2xx."""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
from typing import Any

import pytest

from workers.bridge import webhook
from workers.bridge.webhook import create_webhook_app, token_matches

TOKEN = "s3cr3t-token"
AUTH = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}

NOTIFICATION = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "photos/users/al%20ice/IMG+1.jpg",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventTime": "2024-05-01T10:11:12.345Z",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "photos", "arn": "arn:aws:s3:::photos"},
                "object": {
                    "key": "users%2Fal+ice%2FIMG+1.jpg",
                    "size": 10,
                    "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                    "contentType": "image/jpeg",
                    "userMetadata": {"X-Amz-Meta-User": "alice"},
                    "sequencer": "17C5A1D2E6A1C3D4",
                },
            },
        }
    ],
}


def _request(app: Any, method: str, path: str, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, dict, bytes]:
    """One HTTP exchange through the ASGI interface; the body arrives in ``chunks`` as a client streams it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8765),
    }
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    messages = messages or [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


def _post(app: Any, body: bytes, headers: dict[str, str] | None = None, *, declare_length: bool = True, chunk=None):
    headers = dict(AUTH if headers is None else headers)
    if declare_length:
        headers["content-length"] = str(len(body))
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    return _request(app, "POST", "/events", headers, chunks)


class Recorder:
    """A dispatch that keeps what it was handed (stands in for the broker)."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def __call__(self, record: dict) -> None:
        self.records.append(record)


@pytest.fixture
def sent() -> Recorder:
    return Recorder()


@pytest.fixture
def app(sent: Recorder) -> Any:
    return create_webhook_app(token=TOKEN, max_body_bytes=4096, dispatch=sent)


def test_notification_is_dispatched_then_accepted(app: Any, sent: Recorder) -> None:
    status, _, body = _post(app, json.dumps(NOTIFICATION).encode())
    assert status == 200 and json.loads(body) == {"accepted": 1}
    [record] = sent.records
    assert record["eventName"] == "s3:ObjectCreated:Put"
    assert record["s3"]["object"]["key"] == "users/al ice/IMG 1.jpg"
    assert record["s3"]["object"]["userMetadata"] == {"user": "alice"}


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json"},
        {"authorization": "Bearer wrong-token"},
        {"authorization": TOKEN},  # the token without its scheme
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_missing_or_wrong_token_is_401_and_nothing_is_sent(app: Any, sent: Recorder, headers: dict) -> None:
    status, response_headers, _ = _post(app, json.dumps(NOTIFICATION).encode(), headers)
    assert status == 401 and response_headers["www-authenticate"] == "Bearer"
    assert sent.records == []


def test_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhook.hmac, "compare_digest", spy)
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    assert not token_matches("Bearer nope", TOKEN)
    assert not token_matches(None, TOKEN)
    assert len(calls) == 3 and all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


def test_declared_length_over_the_limit_is_413_before_reading(app: Any, sent: Recorder) -> None:
    status, _, _ = _post(app, b"{" + b" " * 5000 + b"}")
    assert status == 413 and sent.records == []


def test_streamed_body_over_the_limit_is_413_while_reading(app: Any, sent: Recorder) -> None:
    """No Content-Length (chunked transfer): the limit is enforced on the bytes as they arrive."""
    body = json.dumps({**NOTIFICATION, "padding": "x" * 5000}).encode()
    status, _, _ = _post(app, body, declare_length=False, chunk=1024)
    assert status == 413 and sent.records == []


def test_lying_content_length_is_caught_while_reading(app: Any, sent: Recorder) -> None:
    body = json.dumps({**NOTIFICATION, "padding": "x" * 5000}).encode()
    headers = {**AUTH, "content-length": "100"}
    status, _, _ = _request(app, "POST", "/events", headers, [body[:2048], body[2048:]])
    assert status == 413 and sent.records == []


def test_body_under_the_limit_in_chunks_is_accepted(app: Any, sent: Recorder) -> None:
    status, _, _ = _post(app, json.dumps(NOTIFICATION).encode(), declare_length=False, chunk=100)
    assert status == 200 and len(sent.records) == 1


@pytest.mark.parametrize("body", [b"", b'{"EventName": "", "Key": ""}', b'{"Records": []}'])
def test_ping_without_records_is_200(app: Any, sent: Recorder, body: bytes) -> None:
    status, _, response = _post(app, body)
    assert status == 200 and json.loads(response) == {"accepted": 0} and sent.records == []


def test_reachability_probe_is_200_without_token(app: Any) -> None:
    assert _request(app, "HEAD", "/events", {}, [])[0] == 200
    assert _request(app, "GET", "/healthz", {}, [])[0] == 200


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}'])
def test_not_a_notification_is_400(app: Any, sent: Recorder, body: bytes) -> None:
    assert _post(app, body)[0] == 400 and sent.records == []


def test_dispatch_failure_is_503_so_minio_retries() -> None:
    def broker_down(record: dict) -> None:
        raise ConnectionError("Redis at 127.0.0.1:6379 refused the connection")

    failing = create_webhook_app(token=TOKEN, max_body_bytes=4096, dispatch=broker_down)
    status, headers, _ = _post(failing, json.dumps(NOTIFICATION).encode())
    assert status == 503 and headers["retry-after"] == "5"


def test_accepted_only_after_every_record_was_dispatched() -> None:
    """Two records, the second cannot be sent: the answer is 503, never a 2xx for a half-sent body."""
    handed: list[dict] = []

    def second_fails(record: dict) -> None:
        if handed:
            raise ConnectionError("broker went away")
        handed.append(record)

    payload = copy.deepcopy(NOTIFICATION)
    payload["Records"].append(copy.deepcopy(payload["Records"][0]))
    failing = create_webhook_app(token=TOKEN, max_body_bytes=4096, dispatch=second_fails)
    assert _post(failing, json.dumps(payload).encode())[0] == 503
    assert len(handed) == 1


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError):
        create_webhook_app(token="", max_body_bytes=10, dispatch=Recorder())
