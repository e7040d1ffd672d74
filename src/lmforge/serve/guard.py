"""Hardening every request meets before a route: API key, body size, errors, metrics.

In order (``Guard``, a plain ASGI middleware): the API key (``Authorization: Bearer``, compared
in constant time; every route but ``/health``), then the body-size limit (413, counted while
reading, not trusted from Content-Length), then the route. Routes refuse with ``ApiError``;
every error body is OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, so
the ``openai`` client raises with the message. ``Limits`` are the per-request bounds the
routes check (each a ``lmforge serve`` flag).
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from lmforge.serve.metrics import ServerMetrics

ROUTES = (
    "/health",
    "/metrics",
    "/openapi.json",
    "/v1/models",
    "/v1/classify",
    "/v1/ner",
    "/v1/qa",
    "/v1/translate",
    "/v1/images/classify",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/feedback",
)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; each is a ``lmforge serve`` flag."""

    max_body_bytes: int = 1_000_000  # --max-body-bytes
    max_texts: int = 64  # --max-texts: texts (images, prompts, messages) per request
    max_chars: int = 20_000  # --max-chars: characters per text
    max_tokens: int = 512  # --max-tokens: new tokens per choice
    max_n: int = 8  # --max-n: choices per prompt
    timeout_s: float = 60.0  # --timeout: seconds per request


@dataclass(frozen=True)
class Settings:
    api_key: str | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    log_inputs: bool = False  # keep request inputs in the store (else only their hash)
    limits: Limits = Limits()
    # explain.control.Guards from --ban / --gate: every generation route enforces them
    guards: Any = None
    precision: str = "fp32"  # fp32 | bf16 (autocast) | auto: the faster here (--precision)


class ApiError(Exception):
    """An error answered with ``status`` and OpenAI's error body."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")


def error_body(status: int, message: str, param: str | None = None, kind: str = "") -> dict:
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


class Guard:
    """ASGI middleware: API key, body-size limit and request metrics (see the module doc)."""

    def __init__(self, app: Any, settings: Settings, metrics: ServerMetrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics
        self.key = settings.api_key.encode("utf-8") if settings.api_key else None

    async def _reply(self, send: Any, status: int, body: dict, headers: list | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        head = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
        ]
        await send(
            {"type": "http.response.start", "status": status, "headers": head + (headers or [])}
        )
        await send({"type": "http.response.body", "body": data})

    def _authorised(self, scope: dict) -> bool:
        if self.key is None or scope["path"] == "/health":
            return True
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        # compare_digest takes time independent of where the strings differ
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        start, status = time.perf_counter(), [0]

        async def send_counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_counted)
        finally:
            code = str(status[0] or 499)  # 499: the client left before any answer
            self.metrics.requests.labels(route, code).inc()
            if status[0] >= 400 or not status[0]:
                self.metrics.errors.labels(route, code).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)

    async def _handle(self, scope: dict, receive: Any, send: Any) -> None:
        if not self._authorised(scope):
            msg = "missing or wrong API key: send the header 'Authorization: Bearer <key>'"
            return await self._reply(
                send, 401, error_body(401, msg, "authorization", "authentication_error"),
                [(b"www-authenticate", b"Bearer")],
            )  # fmt: skip
        limit = self.settings.limits.max_body_bytes
        body, more = b"", True
        while more:  # read the whole body (bounded) before the app sees it
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                msg = f"request body is over {limit} bytes (--max-body-bytes)"
                return await self._reply(send, 413, error_body(413, msg, "body"))
        if scope["method"] == "POST":  # bodies are JSON whatever Content-Type says (curl -d)
            headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later reads wait for http.disconnect

        await self.app(scope, replay, send)
