"""The FastAPI app: health, models, metrics, the task routes, feedback, and the hardening.

Hardening, in the order a request meets it (``Guard``, a plain ASGI middleware):
API key (``Authorization: Bearer``, compared in constant time; every route but ``/health``),
then the body-size limit (413, counted while reading, not trusted from Content-Length), then
the route: malformed JSON and wrong types are 422 naming the field, limits on texts,
characters, ``max_tokens`` and ``n`` are 422 naming the flag, a request that takes longer than
``--timeout`` is 504 and its queued work is dropped, and a client that goes away frees its
place in the batch. Every error body is OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}``, so the ``openai`` client raises with the message.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import time
import uuid
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# module level: FastAPI resolves the handlers' (string) annotations in this module's globals
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from lmforge.serve import schemas as s
from lmforge.serve.batching import Batcher
from lmforge.serve.feedback import FeedbackStore
from lmforge.serve.loader import ServedModel
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
TASK_OF_ROUTE = {
    "/v1/classify": ("classification",),
    "/v1/ner": ("token-classification",),
    "/v1/qa": ("extractive-qa",),
    "/v1/translate": ("translation",),
    "/v1/images/classify": ("image-classification",),
    "/v1/completions": ("instruction",),
    "/v1/chat/completions": ("instruction",),
}


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
        import json

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


class Server:
    """What the routes share: the model, its batchers, the store, limits and metrics."""

    def __init__(self, sm: ServedModel, settings: Settings, store: FeedbackStore) -> None:
        from lmforge.serve import runners
        from lmforge.serve.generate import generate_batch
        from lmforge.tasks.generation import context_limit

        self.sm, self.settings, self.limits, self.store = sm, settings, settings.limits, store
        self.metrics = ServerMetrics.create()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lmforge-model")
        self.context = context_limit(getattr(sm.model, "config", None))  # None: ONNX
        self.created = int(time.time())

        def batcher(name: str, run: Any) -> Batcher:
            return Batcher(
                run,
                self.executor,
                max_batch_size=settings.max_batch_size,
                max_wait_ms=settings.max_wait_ms,
                observe=self.metrics.observe_batch(name),
            )

        self.batchers = {
            "classify": batcher("classify", lambda xs, _: runners.classify(sm, xs)),
            "images": batcher("images", lambda xs, _: runners.classify_images(sm, xs)),
            "ner": batcher("ner", lambda xs, _: runners.ner(sm, xs)),
            "qa": batcher("qa", lambda xs, _: runners.answer(sm, xs)),
            "translate": batcher("translate", lambda xs, k: runners.translate(sm, xs, k)),
            "embed": batcher("embed", lambda xs, _: runners.embed(sm, xs)),
            "generate": batcher(
                "generate",
                lambda reqs, _: generate_batch(
                    sm.model, sm.processor, reqs, stop_ids=self.eos_ids, context=self.context
                ),
            ),
        }

    @property
    def eos_ids(self) -> list[int]:
        eos = self.sm.processor.eos_token_id if hasattr(self.sm.processor, "eos_token_id") else None
        return [eos] if eos is not None else []

    def new_id(self, prefix: str = "resp") -> str:
        return f"{prefix}-{uuid.uuid4().hex}"

    def check_model(self, name: str | None, route: str) -> None:
        if name is not None and name != self.sm.name:
            raise ApiError(
                404, f"model {name!r} is not served here; this server serves {self.sm.name!r}",
                "model", "model_not_found",
            )  # fmt: skip
        tasks = TASK_OF_ROUTE.get(route)
        if tasks is not None and self.sm.task not in tasks:
            raise ApiError(
                400,
                f"{route} needs a {' or '.join(tasks)} model; this server serves a "
                f"{self.sm.task} model ({self.sm.name})",
                "model",
            )

    def check_texts(self, texts: list[str], field: str) -> None:
        lim = self.limits
        if not texts:
            raise ApiError(422, f"{field}: give at least one", field)
        if len(texts) > lim.max_texts:
            raise ApiError(
                422, f"{field}: {len(texts)} items, at most {lim.max_texts} per request "
                "(--max-texts)", field,
            )  # fmt: skip
        for i, t in enumerate(texts):
            if len(t) > lim.max_chars:
                raise ApiError(
                    422, f"{field}[{i}]: {len(t)} characters, at most {lim.max_chars} "
                    "(--max-chars)", f"{field}[{i}]",
                )  # fmt: skip

    async def bounded(self, request: Any, work: Awaitable[Any]) -> Any:
        """``work``'s result; cancelled (its queued items dropped) when the client leaves or
        the request outlives ``--timeout``."""
        task = asyncio.ensure_future(work)
        deadline = time.monotonic() + self.limits.timeout_s
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.05)
                if done:
                    return task.result()
                if await request.is_disconnected():
                    raise ClientGone
                if time.monotonic() > deadline:
                    raise ApiError(
                        504, f"the request took over {self.limits.timeout_s:g} s (--timeout)",
                        None, "timeout",
                    )  # fmt: skip
        finally:
            if not task.done():
                task.cancel()

    async def log(self, rid: str, route: str, inputs: Any, output: Any) -> None:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(self.store.log_response, rid, self.sm.name, route, inputs, output)


def decode_image(value: Any, index: int) -> Any:
    """An image as pixel rows: base64 PNG/JPEG decoded with PIL, nested lists as given."""
    import numpy as np

    if not isinstance(value, str):
        a = np.asarray(value, dtype=np.float32) if _rectangular(value) else None
        if a is None or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 3)):
            raise ApiError(
                422, f"images[{index}]: give rows of grey values or of [r, g, b] triples, all "
                "rows the same length", f"images[{index}]",
            )  # fmt: skip
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255 or min(a.shape[:2]) < 1:
            raise ApiError(422, f"images[{index}]: pixels must be 0-255", f"images[{index}]")
        return a.tolist()
    from PIL import Image

    try:
        raw = base64.b64decode(value, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            if im.width * im.height > 4096 * 4096:
                raise ApiError(422, f"images[{index}]: over 16M pixels", f"images[{index}]")
            return np.asarray(im.convert("RGB")).tolist()
    except ApiError:
        raise
    except Exception:
        raise ApiError(
            422, f"images[{index}]: not a base64-encoded PNG or JPEG file", f"images[{index}]"
        ) from None


def _rectangular(value: Any) -> bool:
    try:
        import numpy as np

        np.asarray(value, dtype=np.float32)
        return True
    except (ValueError, TypeError):
        return False


def build_app(sm: ServedModel, settings: Settings, store_path: Path) -> Any:
    """The app serving ``sm``; feedback and response logs go to ``store_path``."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from lmforge.serve.openai_routes import add_openai_routes

    store = FeedbackStore(store_path, log_inputs=settings.log_inputs)
    server = Server(sm, settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        for b in server.batchers.values():
            b.start()
        yield
        # uvicorn has finished the in-flight requests (graceful shutdown) before this runs
        for b in server.batchers.values():
            await b.stop()
        server.executor.shutdown(wait=True)
        store.close()

    app = FastAPI(title="lmforge serve", version="1", lifespan=lifespan)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> Response:
        return JSONResponse(error_body(e.status, e.message, e.param, e.kind), e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        return JSONResponse(
            error_body(e.status_code, str(e.detail)), e.status_code, headers=e.headers
        )  # 404 unknown route, 405 wrong method: the same error shape as every other

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, e: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; counted in the metrics

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        errors = e.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        where = ".".join(loc) or "body"
        msg = f"{where}: {first.get('msg', 'invalid')}"
        if first.get("type") == "json_invalid":
            where, msg = "body", f"the body is not valid JSON (error at character {'.'.join(loc)})"
        if len(errors) > 1:
            msg += f" (and {len(errors) - 1} more)"
        return JSONResponse(error_body(422, msg, where), 422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception) -> Response:
        from lmforge.core.errors import LmforgeError

        if isinstance(e, LmforgeError):  # the task refused this input (e.g. too long a prompt)
            return JSONResponse(error_body(400, str(e)), 400)
        from lmforge.core.log import logger

        logger.exception("serve: %s %s failed", request.method, request.url.path)
        return JSONResponse(error_body(500, f"internal error: {type(e).__name__}"), 500)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": sm.name, "task": sm.task}

    @app.get("/v1/models")
    async def models() -> dict:
        card = {
            "id": sm.name, "object": "model", "created": server.created, "owned_by": "lmforge",
            "task": sm.task, "kind": sm.kind, "labels": sm.labels or None,
        }  # fmt: skip
        return {"object": "list", "data": [card]}

    @app.get("/metrics")
    async def metrics() -> Response:
        for name, b in server.batchers.items():
            server.metrics.queue_depth.labels(name).set(b.depth)
        data, kind = server.metrics.render()
        return Response(data, media_type=kind)

    async def task_route(
        request: Request, route: str, queue: str, inputs: list, key: Any = None
    ) -> list:
        server.check_model(None, route)
        return await server.bounded(request, server.batchers[queue].submit(inputs, key))

    @app.post("/v1/classify")
    async def classify(body: s.ClassifyRequest, request: Request) -> dict:
        server.check_model(body.model, "/v1/classify")
        server.check_texts(body.texts, "texts")
        results = await task_route(request, "/v1/classify", "classify", body.texts)
        if body.top_k:
            for r in results:
                r["scores"] = dict(list(r["scores"].items())[: body.top_k])
        return await _answer(server, "/v1/classify", body.texts, results)

    @app.post("/v1/ner")
    async def ner(body: s.TextsRequest, request: Request) -> dict:
        server.check_model(body.model, "/v1/ner")
        server.check_texts(body.texts, "texts")
        results = await task_route(request, "/v1/ner", "ner", body.texts)
        return await _answer(server, "/v1/ner", body.texts, results)

    @app.post("/v1/qa")
    async def qa(body: s.QARequest, request: Request) -> dict:
        server.check_model(body.model, "/v1/qa")
        server.check_texts([body.question], "question")
        server.check_texts([body.context], "context")
        item = (body.question, body.context)
        (result,) = await task_route(request, "/v1/qa", "qa", [item])
        inputs = {"question": body.question, "context": body.context}
        return await _answer(server, "/v1/qa", inputs, [result])

    @app.post("/v1/translate")
    async def translate(body: s.TranslateRequest, request: Request) -> dict:
        server.check_model(body.model, "/v1/translate")
        server.check_texts(body.texts, "texts")
        max_tokens = _max_tokens(server, body.max_tokens, sm.cfg.generation_max_tokens)
        results = await task_route(request, "/v1/translate", "translate", body.texts, max_tokens)
        return await _answer(server, "/v1/translate", body.texts, results)

    @app.post("/v1/images/classify")
    async def images(body: s.ImageRequest, request: Request) -> dict:
        server.check_model(body.model, "/v1/images/classify")
        if not body.images or len(body.images) > server.limits.max_texts:
            n = len(body.images)
            raise ApiError(
                422, f"images: {n} images, give 1 to {server.limits.max_texts} (--max-texts)",
                "images",
            )  # fmt: skip
        pixels = [decode_image(x, i) for i, x in enumerate(body.images)]
        results = await task_route(request, "/v1/images/classify", "images", pixels)
        if body.top_k:
            for r in results:
                r["scores"] = dict(list(r["scores"].items())[: body.top_k])
        from lmforge.serve.feedback import input_hash

        hashes = [input_hash(p) for p in pixels]  # the log keeps hashes, never pixels
        return await _answer(server, "/v1/images/classify", hashes, results)

    @app.post("/v1/feedback")
    async def feedback(body: s.FeedbackRequest) -> dict:
        from starlette.concurrency import run_in_threadpool

        if body.rating is None and body.correction is None:
            raise ApiError(422, "give a rating, a correction, or both", "rating")
        known = await run_in_threadpool(store.has_response, body.response_id)
        if not known:
            raise ApiError(
                404, f"no response with id {body.response_id!r} was served by this store",
                "response_id",
            )  # fmt: skip
        fid = await run_in_threadpool(
            store.add_feedback, body.response_id, body.rating, body.correction, body.comment,
            body.input,
        )  # fmt: skip
        return {"id": fid, "response_id": body.response_id, "stored": True}  # committed

    add_openai_routes(app, server)
    return Guard(app, settings, server.metrics)


def _max_tokens(server: Server, asked: int | None, default: int, field: str = "max_tokens") -> int:
    limit = server.limits.max_tokens
    if asked is not None and asked > limit:
        raise ApiError(422, f"{field}: {asked}, at most {limit} (--max-tokens)", field)
    return min(asked or default, limit)


async def _answer(server: Server, route: str, inputs: Any, results: list) -> dict:
    """The response body (``id`` for feedback), logged to the store before it is returned."""
    rid = server.new_id()
    await server.log(rid, route, inputs, results)
    return {"id": rid, "model": server.sm.name, "results": results}
