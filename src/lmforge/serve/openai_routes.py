"""OpenAI-compatible routes: ``/v1/completions``, ``/v1/chat/completions``, ``/v1/embeddings``.

The bodies and answers follow OpenAI's API so the official ``openai`` client works unchanged
(``base_url="http://127.0.0.1:8000/v1"``), streaming included: with ``stream: true`` the
answer is server-sent events, one ``data: {chunk}`` per piece of text, then a chunk with each
choice's ``finish_reason``, the usage when ``stream_options.include_usage`` is set, and
``data: [DONE]``. Concurrent requests' prompts share one generation batch (``generate.py``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Request

from lmforge.models.sampling import GenRequest, GenResult, SamplingParams
from lmforge.serve import schemas as s

if TYPE_CHECKING:
    from lmforge.explain.control import Guards
    from lmforge.serve.app import Server


def _stops(stop: str | list[str] | None) -> list[str]:
    from lmforge.serve.guard import ApiError

    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4:
        raise ApiError(422, f"stop: {len(stops)} strings, at most 4", "stop")
    if any(not s for s in stops):
        raise ApiError(422, "stop: strings must not be empty", "stop")
    return stops


def chat_prompt(tokenizer: Any, messages: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of a conversation ending where the assistant's reply starts, and the ids
    that end a reply: the tokenizer's chat template, else the instruction task's plain one."""
    from lmforge.tasks.instruction import chat_format

    fmt = chat_format(tokenizer, quiet=True)
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": r, "content": c} for r, c in messages],
            tokenize=False,
            add_generation_prompt=True,
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"], fmt.stop_ids
    ids: list[int] = []
    system = "\n\n".join(c for r, c in messages if r in ("system", "developer"))
    first = True
    for role, content in messages:
        if role == "user":
            turn = f"{system}\n\n{content}" if first and system else content
            ids += fmt.head + tokenizer(turn, add_special_tokens=False)["input_ids"] + fmt.middle
            first = False
        elif role == "assistant":
            ids += tokenizer(content, add_special_tokens=False)["input_ids"] + fmt.end
    if first:  # no user turn: the system text is the turn
        ids += fmt.head + tokenizer(system, add_special_tokens=False)["input_ids"] + fmt.middle
    return ids, fmt.stop_ids


def format_guards(fmt: s.ResponseFormat | None) -> Guards | None:
    """The constraint a ``response_format`` asks for; None for plain text."""
    from lmforge.explain.control import Guards
    from lmforge.serve.guard import ApiError

    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return Guards(json_schema={"type": "object"})
    if fmt.json_schema is None:
        raise ApiError(
            422, "response_format.json_schema: required when type is json_schema",
            "response_format.json_schema",
        )  # fmt: skip
    return Guards(json_schema=fmt.json_schema.schema_)


def request_guards(fmt: s.ResponseFormat | None, served: Guards | None) -> Guards | None:
    """The token-level guards of one request: its ``response_format`` and the server's
    banned phrases (``--ban``)."""
    from dataclasses import replace

    from lmforge.explain.control import Guards

    guards = format_guards(fmt)
    banned = list(served.banned) if served is not None else []
    if not banned:
        return guards
    return replace(guards or Guards(), banned=banned)


def gated(results: list[GenResult], guards: Guards | None) -> list[GenResult]:
    """Results whose text the server's ``--gate`` flags, withheld (OpenAI's finish reason
    ``content_filter``)."""
    from dataclasses import replace

    if guards is None or guards.gate is None:
        return results
    return [
        replace(r, text="", finish_reason="content_filter") if guards.gate.flags(r.text) else r
        for r in results
    ]


def check_prompts(texts: list[str], guards: Guards | None, field: str) -> None:
    """Refuse a request whose prompt text the server's ``--gate`` flags."""
    from lmforge.serve.guard import ApiError

    if guards is None or guards.gate is None:
        return
    for i, text in enumerate(texts):
        if flag := guards.gate.flags(text):
            raise ApiError(
                400, f"{field}[{i}] is refused: the gate classifies it as {flag!r}", field,
                "content_filter",
            )  # fmt: skip


def add_openai_routes(app: Any, server: Server) -> None:
    from fastapi.responses import StreamingResponse

    from lmforge.core.errors import LmforgeError
    from lmforge.explain.control import guard_processors
    from lmforge.serve.app import _max_tokens
    from lmforge.serve.guard import ApiError

    sm = server.sm

    def requests_for(
        prompts: list[list[int]], body: s.GenerationBody, max_tokens: int, stop_ids: list[int]
    ) -> list[GenRequest]:
        if body.logprobs:
            raise ApiError(422, "logprobs: not supported by this server", "logprobs")
        if body.n > server.limits.max_n:
            raise ApiError(422, f"n: {body.n}, at most {server.limits.max_n} (--max-n)", "n")
        if len(prompts) * body.n > server.limits.max_texts:
            raise ApiError(
                422, f"prompts x n = {len(prompts) * body.n}, at most {server.limits.max_texts} "
                "(--max-texts)", "n",
            )  # fmt: skip
        stops = _stops(body.stop)
        guards = request_guards(body.response_format, server.settings.guards)
        eos = getattr(sm.processor, "eos_token_id", None)
        if guards is not None and eos is not None and eos not in stop_ids:
            stop_ids = [*stop_ids, eos]  # a constrained output ends with EOS once it is whole
        out = []
        for p, ids in enumerate(prompts):
            if not ids:
                raise ApiError(422, f"prompt {p} is empty after tokenizing", "prompt")
            if server.context is not None and len(ids) >= server.context:
                raise ApiError(
                    400, f"prompt {p} has {len(ids)} tokens; the model's context is "
                    f"{server.context} tokens, shorten it", "prompt", "context_length_exceeded",
                )  # fmt: skip
            processors = constrain(guards, len(ids), max_tokens)
            for i in range(body.n):
                seed = None if body.seed is None else body.seed + i
                params = SamplingParams(
                    max_tokens, body.temperature, top_p=body.top_p, stop=stops, seed=seed,
                    logits_processors=processors,
                )  # fmt: skip
                out.append(GenRequest(list(ids), params, stop_ids=stop_ids))
        return out

    def constrain(guards: Guards | None, prompt_length: int, max_tokens: int) -> list[Any]:
        """The logits processors enforcing ``response_format`` after this prompt."""
        if guards is None:
            return []
        try:
            processors, _ = guard_processors(sm.processor, guards, prompt_length, max_tokens)
        except LmforgeError as e:
            raise ApiError(422, f"response_format: {e}", "response_format") from None
        return processors

    def usage(results: list[GenResult], prompts: list[list[int]]) -> dict[str, int]:
        prompt = sum(len(p) for p in prompts)
        completion = sum(r.completion_tokens for r in results)
        server.metrics.tokens.labels("prompt").inc(prompt)
        server.metrics.tokens.labels("completion").inc(completion)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def finish(r: GenResult) -> str:
        if r.finish_reason in ("length", "content_filter"):
            return r.finish_reason
        return "stop"

    async def run(
        request: Request,
        body: s.GenerationBody,
        reqs: list[GenRequest],
        prompts: list[list[int]],
        rid: str,
        chunk: Any,
        whole: Any,
        inputs: Any,
        route: str,
    ) -> Any:
        """Answer with the whole completion, or stream it (``chunk(index, text, finish)``)."""
        batcher = server.batchers["generate"]
        if not body.stream:
            try:
                results = await server.bounded(request, batcher.submit(reqs))
            finally:
                for r in reqs:
                    r.cancelled.set()  # a row still running stops at its next step
            results = gated(results, server.settings.guards)
            answer = whole(results, usage(results, prompts))
            await server.log(rid, route, inputs, [r.text for r in results])
            return answer
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        gate = server.settings.guards is not None and server.settings.guards.gate is not None
        for i, r in enumerate(reqs):  # a gated reply is streamed only once checked whole
            if not gate:
                r.on_text = lambda text, i=i: loop.call_soon_threadsafe(queue.put_nowait, (i, text))
        await server.log(rid, route, inputs, None)  # logged at start: feedback may follow

        async def events() -> AsyncIterator[str]:
            task = asyncio.ensure_future(batcher.submit(reqs))
            task.add_done_callback(lambda _: queue.put_nowait(None))
            deadline = time.monotonic() + server.limits.timeout_s
            try:
                if first := chunk(None, None, None):
                    yield first
                while (item := await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))) is not None:  # fmt: skip
                    yield chunk(*item, None)
                results = gated(task.result(), server.settings.guards)
                for i, r in enumerate(results):
                    if gate and r.text:
                        yield chunk(i, r.text, None)
                    yield chunk(i, "", finish(r))
                if (body.stream_options or {}).get("include_usage"):
                    yield chunk(-1, usage(results, prompts), None)
            except (TimeoutError, asyncio.TimeoutError):
                yield "data: " + json.dumps(
                    {"error": {"message": f"over {server.limits.timeout_s:g} s (--timeout)",
                               "type": "timeout", "param": None, "code": 504}}
                ) + "\n\n"  # fmt: skip
            except Exception as e:  # after the 200 is sent an error can only be an event
                yield "data: " + json.dumps(
                    {"error": {"message": str(e), "type": "server_error", "param": None,
                               "code": 500}}
                ) + "\n\n"  # fmt: skip
            finally:
                for r in reqs:
                    r.cancelled.set()  # a client that left frees its rows at the next step
                if not task.done():
                    task.cancel()
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.post("/v1/completions")
    async def completions(body: s.CompletionRequest, request: Request) -> Any:
        server.check_model(body.model, "/v1/completions")
        if body.echo:
            raise ApiError(422, "echo: not supported by this server", "echo")
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        server.check_texts(texts, "prompt")
        check_prompts(texts, server.settings.guards, "prompt")
        max_tokens = _max_tokens(server, body.max_tokens, 16)
        prompts = [sm.processor(t)["input_ids"] for t in texts]
        reqs = requests_for(prompts, body, max_tokens, server.eos_ids)
        rid, created = server.new_id("cmpl"), int(time.time())
        head = {"id": rid, "object": "text_completion", "created": created, "model": sm.name}

        def choice(i: int, text: str, reason: str | None) -> dict:
            return {"index": i, "text": text, "logprobs": None, "finish_reason": reason}

        def chunk(i: int | None, text: Any, reason: str | None) -> str | None:
            if i is None:
                return None
            if i < 0:
                return "data: " + json.dumps({**head, "choices": [], "usage": text}) + "\n\n"
            return "data: " + json.dumps({**head, "choices": [choice(i, text, reason)]}) + "\n\n"

        def whole(results: list[GenResult], used: dict) -> dict:
            choices = [choice(i, r.text, finish(r)) for i, r in enumerate(results)]
            return {**head, "choices": choices, "usage": used}

        return await run(request, body, reqs, prompts, rid, chunk, whole, texts, "/v1/completions")

    @app.post("/v1/chat/completions")
    async def chat(body: s.ChatRequest, request: Request) -> Any:
        server.check_model(body.model, "/v1/chat/completions")
        for i, m in enumerate(body.messages):
            if isinstance(m.content, list) and any(p.get("type") != "text" for p in m.content):
                raise ApiError(422, f"messages[{i}].content: only text parts are supported",
                               f"messages[{i}].content")  # fmt: skip
        messages = [(m.role, m.text()) for m in body.messages]
        server.check_texts([c for _, c in messages], "messages")
        check_prompts([c for _, c in messages], server.settings.guards, "messages")
        asked = body.max_completion_tokens or body.max_tokens
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        max_tokens = _max_tokens(server, asked, sm.cfg.generation_max_tokens, field)
        ids, stop_ids = chat_prompt(sm.processor, messages)
        reqs = requests_for([ids], body, max_tokens, stop_ids)
        rid, created = server.new_id("chatcmpl"), int(time.time())
        head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": sm.name}

        def chunk(i: int | None, text: Any, reason: str | None) -> str | None:
            if i is None:  # first event per choice: the role
                return "".join(
                    "data: " + json.dumps({**head, "choices": [
                        {"index": k, "delta": {"role": "assistant", "content": ""},
                         "logprobs": None, "finish_reason": None}]}) + "\n\n"
                    for k in range(len(reqs))
                )  # fmt: skip
            if i < 0:
                return "data: " + json.dumps({**head, "choices": [], "usage": text}) + "\n\n"
            delta = {"content": text} if text else {}
            c = {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}
            return "data: " + json.dumps({**head, "choices": [c]}) + "\n\n"

        def whole(results: list[GenResult], used: dict) -> dict:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": r.text},
                    "logprobs": None,
                    "finish_reason": finish(r),
                }
                for i, r in enumerate(results)
            ]
            return {**head, "object": "chat.completion", "choices": choices, "usage": used}

        inputs = [{"role": r, "content": c} for r, c in messages]
        return await run(
            request, body, reqs, [ids], rid, chunk, whole, inputs, "/v1/chat/completions"
        )

    @app.post("/v1/embeddings")
    async def embeddings(body: s.EmbeddingRequest, request: Request) -> dict:
        server.check_model(body.model, "/v1/embeddings")
        if body.dimensions is not None:
            raise ApiError(422, "dimensions: not supported (embeddings keep the model's width)",
                           "dimensions")  # fmt: skip
        texts = [body.input] if isinstance(body.input, str) else body.input
        server.check_texts(texts, "input")
        rows = await server.bounded(request, server.batchers["embed"].submit(texts))
        data = []
        for i, (vector, _) in enumerate(rows):
            value: Any = vector
            if body.encoding_format == "base64":  # little-endian float32, as OpenAI sends
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(n for _, n in rows)
        return {
            "object": "list",
            "data": data,
            "model": sm.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
