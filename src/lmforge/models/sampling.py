"""Batched sampling from a causal LM for the OpenAI routes: left padding + KV cache.

Concurrent prompts run as one batch (static batching: the batch runs until its last row ends).
Prompts are padded on the LEFT so every row's next token follows its own last prompt token;
position ids count only real tokens, so a padded row computes what it would alone. Each step
feeds only the new token per row and the cached keys/values (``past_key_values``), so a step
costs one token per row, not the whole sequence.

Every row has its own sampling parameters (temperature, top_p, seed, stop strings) and may be
given ``logits_processors`` and ``stop_criteria`` with transformers' signatures, applied to
that row alone as ``(input_ids (1, L), scores (1, V))`` where ``input_ids`` is the row's own
prompt + generated tokens (no padding: ``prompt_length = len(prompt_ids)``) - so generation
guards (``lmforge.explain.control``: banned phrases, regex/JSON constraints) plug in without
touching this loop. A row whose client went away
(``cancelled`` set) stops at the next step and frees its place.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

LogitsProcessor = Callable[[Any, Any], Any]  # (input_ids (1, L), scores (1, V)) -> scores
StopCriterion = Callable[[Any, Any], Any]  # (input_ids (1, L), scores (1, V)) -> bool


@dataclass
class SamplingParams:
    """How one row samples (the OpenAI request fields)."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0  # nucleus: sample among the smallest set of tokens with this much mass
    stop: Sequence[str] = ()  # strings that end the text (not returned)
    seed: int | None = None  # same seed + same prompt -> same text
    logits_processors: Sequence[LogitsProcessor] = ()
    stop_criteria: Sequence[StopCriterion] = ()


@dataclass
class GenRequest:
    """One row: a prompt, how to sample it, and where streamed text goes."""

    prompt_ids: list[int]
    params: SamplingParams
    stop_ids: Sequence[int] = ()  # tokens that end this row (default: generate_batch's)
    on_text: Callable[[str], None] | None = None  # called (model thread) with new text
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class GenResult:
    text: str
    token_ids: list[int]
    finish_reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class _Row:
    """A row's state across steps: its tokens, text, what was streamed, why it ended."""

    def __init__(self, req: GenRequest, tokenizer: Any, device: Any) -> None:
        import torch

        self.req, self.tokenizer = req, tokenizer
        self.ids: list[int] = []
        self.text = ""
        self.sent = 0  # characters of text already streamed
        self.finish: str | None = None
        seed = req.params.seed if req.params.seed is not None else secrets.randbits(63)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def add(self, token: int, stop_ids: set[int]) -> None:
        if token in (set(self.req.stop_ids) or stop_ids):
            self.finish = "stop"
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for s in self.req.params.stop:
            at = text.find(s)
            if s and at >= 0:
                text, self.finish = text[:at], "stop"
        self.text = text
        if len(self.ids) >= self.req.params.max_tokens and self.finish is None:
            self.finish = "length"

    def flush(self) -> None:
        """Stream the text that can no longer change: not a half-decoded character and not
        a possible start of a stop string (unless the row is finished)."""
        if self.req.on_text is None:
            return
        end = len(self.text)
        if self.finish is None:
            if self.text.endswith("\ufffd"):  # a multi-byte character still being decoded
                end = len(self.text.rstrip("\ufffd"))
            for s in self.req.params.stop:
                for k in range(min(len(s) - 1, end), 0, -1):
                    if self.text[:end].endswith(s[:k]):
                        end -= k
                        break
        if end > self.sent:
            self.req.on_text(self.text[self.sent : end])
            self.sent = end


def _sample(scores: Any, params: SamplingParams, generator: Any) -> int:
    """One token from the (V,) scores: argmax at temperature 0, else top-p sampling."""
    import torch

    if params.temperature <= 0:
        return int(scores.argmax())
    probs = torch.softmax(scores.float() / params.temperature, -1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < params.top_p  # always keeps the top token
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask


def generate_batch(
    model: Any,
    tokenizer: Any,
    requests: list[GenRequest],
    *,
    stop_ids: Sequence[int],
    context: int | None = None,
) -> list[GenResult]:
    """Sample every request's continuation in one batch (see the module doc).

    Args:
        stop_ids: tokens that end a row (EOS, end-of-turn) unless the row names its own;
            not part of the text.
        context: the model's position limit; a row ends ("length") when it is reached.
    """
    import torch

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = next(iter(stop_ids), 0)
    stops = set(stop_ids)
    rows = [_Row(r, tokenizer, device) for r in requests]
    ids, mask = _left_pad([r.prompt_ids for r in requests], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # real tokens count from 0 in every row
    width = ids.shape[1]
    limit = max(r.params.max_tokens for r in requests)
    if context is not None:
        limit = min(limit, context - width)
    past = None
    inputs, history = ids, ids  # history: (B, L) prompt + generated, for logits processors
    for step in range(max(limit, 0)):
        with torch.no_grad():
            out = model(
                input_ids=inputs,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=past,
                use_cache=True,
            )
        past = out.past_key_values
        logits = out.logits[:, -1, :].float()  # (B, V)
        next_tokens = []
        for b, row in enumerate(rows):
            if row.finish is None and row.req.cancelled.is_set():
                row.finish = "cancelled"
            if row.finish is not None:
                next_tokens.append(pad_id)
                continue
            scores = logits[b : b + 1]  # (1, V)
            # this row's prompt + generated tokens without its left padding: a processor sees
            # what it would see alone, so its prompt_length is len(prompt_ids)
            seen = history[b : b + 1, width - len(row.req.prompt_ids) :]
            for process in row.req.params.logits_processors:
                scores = process(seen, scores)
            token = _sample(scores[0], row.req.params, row.generator)
            next_tokens.append(token)
            row.add(token, stops)
            if row.finish is None and any(
                bool(stop(torch.cat([seen, torch.tensor([[token]], device=device)], 1), scores))
                for stop in row.req.params.stop_criteria
            ):
                row.finish = "stop"
            row.flush()
        if all(r.finish is not None for r in rows) or step == limit - 1:
            break
        inputs = torch.tensor(next_tokens, device=device).unsqueeze(1)  # (B, 1)
        history = torch.cat([history, inputs], 1)
        mask = torch.cat([mask, torch.ones_like(inputs)], 1)
        positions = positions[:, -1:] + 1
    results = []
    for row in rows:
        if row.finish is None:  # the context (or max_tokens) ran out
            row.finish = "length"
        row.flush()
        results.append(GenResult(row.text, row.ids, row.finish, len(row.req.prompt_ids)))  # type: ignore[arg-type]
    return results
