"""The FastAPI app: health, models, metrics, the task routes and feedback (``build_app``).

The hardening a request meets first (API key, body size, error shape) is ``guard.py``; here
the routes add the rest: malformed JSON and wrong types are 422 naming the field, limits on
texts, characters, ``max_tokens`` and ``n`` are 422 naming the flag, a request that takes
longer than ``--timeout`` is 504 and its queued work is dropped, and a client that goes away
frees its place in the batch (``Server.bounded``).
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

# module level: FastAPI resolves the handlers' (string) annotations in this module's globals
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from lmforge.core.log import logger
from lmforge.serve import schemas as s
from lmforge.serve.batching import Batcher
from lmforge.serve.feedback import FeedbackStore
from lmforge.serve.guard import ApiError, ClientGone, Guard, Settings, error_body
from lmforge.serve.guard import Limits as Limits  # re-exported: the CLI builds Settings here
from lmforge.serve.loader import ServedModel
from lmforge.serve.metrics import ServerMetrics

TASK_OF_ROUTE = {
    "/v1/classify": ("classification",),
    "/v1/ner": ("token-classification",),
    "/v1/qa": ("extractive-qa",),
    "/v1/translate": ("translation",),
    "/v1/images/classify": ("image-classification",),
    "/v1/completions": ("instruction",),
    "/v1/chat/completions": ("instruction",),
}


def serving_precision(sm: ServedModel, settings: Settings) -> Any:
    """What the model thread computes in (``--precision``), resolved once at start-up.

    bf16 autocast is a torch feature: an ONNX or int8 artefact runs as it was exported, so
    asking for bf16 there is an error and ``auto`` keeps fp32. ``auto`` times the model's MLP
    product at a full batch of the longest inputs in fp32 and in bf16 and keeps the faster.
    """
    from lmforge.core.errors import LmforgeError
    from lmforge.core.precision import PrecisionChoice, model_hidden_size, resolve_precision

    requested = settings.precision
    if requested == "fp32":
        return PrecisionChoice("fp32", "fp32")
    if sm.format != "transformers":
        if requested == "auto":
            return PrecisionChoice("fp32", "auto")
        raise LmforgeError(
            f"--precision {requested}: {sm.artifact or sm.path} ({sm.format}) runs as it was "
            "exported; bf16/fp16 autocast applies to transformers models "
            "(serve the fine-tuned model with --uncompressed, or drop --precision)"
        )
    import torch

    device = next(sm.model.parameters()).device
    if device.type == "cpu" and requested == "fp16":
        raise LmforgeError("--precision fp16 needs a CUDA GPU; use bf16 on a CPU")
    hidden = model_hidden_size(sm.model)
    tokens = settings.max_batch_size * int(getattr(sm.cfg, "max_length", 128) or 128)
    return resolve_precision(requested, torch.device(device), tokens, hidden, who="serve")


def in_precision(run: Any, precision: str, sm: ServedModel) -> Any:
    """``run`` wrapped to compute in ``precision`` (autocast is per thread: entered in the
    model thread, around each batch)."""
    if precision == "fp32":
        return run
    from lmforge.core.precision import autocast_context

    device = next(sm.model.parameters()).device

    def wrapped(values: list[Any], key: Any) -> Any:
        with autocast_context(precision, device):
            return run(values, key)

    return wrapped


class Server:
    """What the routes share: the model, its batchers, the store, limits and metrics."""

    def __init__(self, sm: ServedModel, settings: Settings, store: FeedbackStore) -> None:
        from lmforge.models.sampling import context_limit, generate_batch
        from lmforge.serve import runners

        self.sm, self.settings, self.limits, self.store = sm, settings, settings.limits, store
        self.metrics = ServerMetrics.create()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lmforge-model")
        self.context = context_limit(getattr(sm.model, "config", None))  # None: ONNX
        self.created = int(time.time())
        self.precision = serving_precision(sm, settings)
        logger.info("serve: computing in %s", self.precision.precision)

        def batcher(name: str, run: Any) -> Batcher:
            return Batcher(
                in_precision(run, self.precision.precision, sm),
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
        the request outlives ``--timeout``.

        One watcher per request waits for the server's ``http.disconnect`` message instead of
        polling ``request.is_disconnected()``: polling every 50 ms cost a fifth of the event
        loop's time at 16 concurrent clients (profiled with py-spy), time the model thread
        then lacked.
        """
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait(
                {task, gone}, timeout=self.limits.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                return task.result()
            if gone in done:
                raise ClientGone
            raise ApiError(
                504, f"the request took over {self.limits.timeout_s:g} s (--timeout)", None,
                "timeout",
            )  # fmt: skip
        finally:
            for t in (task, gone):
                if not t.done():
                    t.cancel()

    async def log(self, rid: str, route: str, inputs: Any, output: Any) -> None:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(self.store.log_response, rid, self.sm.name, route, inputs, output)


async def _disconnected(request: Any) -> None:
    """Returns when the client has gone: the ASGI server's receive() blocks, once the body is
    read, until it sends ``http.disconnect``."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


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

        logger.exception("serve: %s %s failed", request.method, request.url.path)
        return JSONResponse(error_body(500, f"internal error: {type(e).__name__}"), 500)

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok", "model": sm.name, "task": sm.task, "artifact": sm.artifact,
            "format": sm.format, "precision": server.precision.precision,
        }  # fmt: skip

    @app.get("/v1/models")
    async def models() -> dict:
        card = {
            "id": sm.name, "object": "model", "created": server.created, "owned_by": "lmforge",
            "task": sm.task, "kind": sm.kind, "labels": sm.labels or None,
            "artifact": sm.artifact, "format": sm.format,
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
        plain = body.model_dump(mode="json", include={"correction", "input"}, exclude_none=True)
        fid = await run_in_threadpool(
            store.add_feedback, body.response_id, body.rating, plain.get("correction"),
            body.comment, plain.get("input"),
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
