"""Batched greedy generation for the tasks whose predictions are text (instruction, translation).

Two functions::

    out = greedy_generate(model, prompts, pad_id=..., stop_ids=[...], max_new_tokens=64)
    texts = decode(tokenizer, out.ids)

``prompts`` are token-id lists: what a decoder continues (the chat-formatted user turn), or
what an encoder-decoder reads (the source sentence). Prompts are sorted by length and batched
(less padding), padded on the LEFT for decoder-only models (so every row's next token follows
its own last prompt token) and on the right for encoder-decoders; results come back in input
order. Works for plain transformers models and peft-wrapped ones alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger
from lmforge.models.sampling import context_limit


@dataclass
class Generated:
    """New tokens per prompt, in input order."""

    ids: list[list[int]]  # up to (excluding) the first stop token
    stopped: list[bool]  # True when a stop token ended the row, False when max_new_tokens did

    @property
    def stopped_fraction(self) -> float:
        return sum(self.stopped) / max(len(self.stopped), 1)


def greedy_generate(
    model: Any,
    prompts: list[list[int]],
    *,
    pad_id: int,
    stop_ids: list[int],
    max_new_tokens: int,
    batch_size: int = 16,
) -> Generated:
    """Greedy continuations of ``prompts``, through the one generation loop
    (``lmforge.models.sampling``).

    Args:
        model: a causal LM or encoder-decoder (``config.is_encoder_decoder``), possibly
            wrapped by peft.
        prompts: token ids per example; none may be empty.
        pad_id: padding id (masked out; decoders without one pad with EOS).
        stop_ids: tokens that end a row (EOS, the chat template's end-of-turn token); they
            are not returned.
        max_new_tokens: cap per row; a decoder is also capped at its position limit.

    Raises:
        LmforgeError: an empty prompt, or a prompt that already fills the model's context.
    """
    from lmforge.models.sampling import GenRequest, SamplingParams, generate_batch

    empty = [i for i, p in enumerate(prompts) if not p]
    if empty:
        raise LmforgeError(f"cannot generate from empty prompts (rows {empty[:5]})")
    config = model.config
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    # an encoder-decoder's decoder reads its start token + what it wrote: T5 has no position
    # table, a bert2gpt's GPT-2 decoder has one
    limit = context_limit(getattr(config, "decoder", None) if encoder_decoder else config)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    ids: list[list[int]] = [[] for _ in prompts]
    stopped = [False] * len(prompts)
    capped = 0
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = 1 if encoder_decoder else max(len(prompts[i]) for i in rows)
        new_tokens = max_new_tokens
        if limit is not None and width + new_tokens > limit:
            new_tokens = limit - width
            capped += len(rows)
            if new_tokens < 1:
                raise LmforgeError(
                    f"a prompt of {width} tokens fills the model's {limit}-token context; "
                    "lower finetune.max_length"
                )
        params = SamplingParams(new_tokens, temperature=0)
        requests = [GenRequest(prompts[i], params) for i in rows]
        results = generate_batch(model, None, requests, stop_ids=stop_ids, pad_id=pad_id)
        for i, result in zip(rows, results, strict=True):
            ids[i] = result.token_ids
            stopped[i] = result.finish_reason == "stop"
    if capped:
        logger.warning(
            "generation: %d prompts were given fewer than %d new tokens to stay within the "
            "model's %s-token context",
            capped,
            max_new_tokens,
            limit,
        )
    return Generated(ids, stopped)


def decode(tokenizer: Any, ids: list[list[int]]) -> list[str]:
    """Token ids -> text without special tokens, surrounding whitespace stripped."""
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
