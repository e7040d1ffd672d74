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


@dataclass
class Generated:
    """New tokens per prompt, in input order."""

    ids: list[list[int]]  # up to (excluding) the first stop token
    stopped: list[bool]  # True when a stop token ended the row, False when max_new_tokens did

    @property
    def stopped_fraction(self) -> float:
        return sum(self.stopped) / max(len(self.stopped), 1)


def context_limit(config: Any) -> int | None:
    """The longest sequence the model's positions cover (GPT-2 ``n_positions``, Llama
    ``max_position_embeddings``); ``None`` when the config names none."""
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _pad(rows: list[list[int]], pad_id: int, left: bool) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(r, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def greedy_generate(
    model: Any,
    prompts: list[list[int]],
    *,
    pad_id: int,
    stop_ids: list[int],
    max_new_tokens: int,
    batch_size: int = 16,
) -> Generated:
    """Greedy continuations of ``prompts`` (``model.generate`` with ``do_sample=False``).

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
    import torch
    from transformers import GenerationConfig

    empty = [i for i, p in enumerate(prompts) if not p]
    if empty:
        raise LmforgeError(f"cannot generate from empty prompts (rows {empty[:5]})")
    config = model.config
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    limit = None if encoder_decoder else context_limit(config)
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    ids: list[list[int]] = [[] for _ in prompts]
    stopped = [False] * len(prompts)
    capped = 0
    stops = set(stop_ids)
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = [prompts[i] for i in rows]
        width = max(len(p) for p in batch)
        new_tokens = max_new_tokens
        if limit is not None and width + new_tokens > limit:
            new_tokens = limit - width
            capped += len(rows)
            if new_tokens < 1:
                raise LmforgeError(
                    f"a prompt of {width} tokens fills the model's {limit}-token context; "
                    "lower finetune.max_length"
                )
        input_ids, mask = _pad(batch, pad_id, left=not encoder_decoder)
        gen = GenerationConfig(
            max_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=list(stop_ids),
            pad_token_id=pad_id,
        )
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                generation_config=gen,
            )
        # decoders return prompt + new tokens; encoder-decoders the decoder start + new tokens
        new = out[:, 1:] if encoder_decoder else out[:, input_ids.shape[1] :]
        for i, row in zip(rows, new.tolist(), strict=True):
            cut = next((j for j, t in enumerate(row) if t in stops), None)
            ids[i] = row if cut is None else row[:cut]
            stopped[i] = cut is not None
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
