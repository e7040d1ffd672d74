"""The one generation loop: batched greedy or sampled continuations, with a KV cache.

Everything in lmforge that writes text goes through ``generate_batch``: the evaluation of
instruction and translation models (``tasks.generation.greedy_generate``), ``lmforge
generate`` and its guards (``models.generate``, ``explain.control``) and the OpenAI routes of
``lmforge serve`` (concurrent prompts as one batch, streaming, client hang-ups). One loop
means one set of rules for stop tokens, context limits and seeds, tested once.

Decoder-only prompts are padded on the LEFT so every row's next token follows its own last
prompt token; position ids count only real tokens, so a padded row computes what it would
alone. Encoder-decoders read their (right-padded) source once and decode from the decoder
start token. Each step feeds only the new token per row and the cached keys/values
(``past_key_values``), so a step costs one token per row, not the whole sequence. The batch
runs until its last row ends (static batching).

Every row has its own sampling parameters (temperature, top_k, top_p, seed, stop strings) and
may be given ``logits_processors`` and ``stop_criteria`` with transformers' signatures,
applied to that row alone as ``(input_ids (1, L), scores (1, V))`` where ``input_ids`` is the
row's own prompt + generated tokens (no padding: ``prompt_length = len(prompt_ids)``; for an
encoder-decoder, the decoder start token + generated tokens, ``prompt_length = 1``) - so
generation guards (``lmforge.explain.control``: banned phrases, regex/JSON constraints) plug in
without touching this loop. A row whose client went away (``cancelled`` set) stops at the next
step and frees its place.
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
    top_k: int | None = None  # sample among the k most likely tokens only
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
    finish_reason: Literal["stop", "length", "cancelled", "content_filter"]
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
        # text is only needed while generating for stop strings and streaming; else decode once
        self.live = bool(req.params.stop) or req.on_text is not None
        self.generator = None
        if req.params.temperature > 0:
            seed = req.params.seed if req.params.seed is not None else secrets.randbits(63)
            self.generator = torch.Generator(device=device).manual_seed(seed)

    def add(self, token: int, stop_ids: set[int]) -> None:
        if token in (set(self.req.stop_ids) or stop_ids):
            self.finish = "stop"
            return
        self.ids.append(token)
        if self.live:
            self.decode()
        if len(self.ids) >= self.req.params.max_tokens and self.finish is None:
            self.finish = "length"

    def decode(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for s in self.req.params.stop:
            at = text.find(s)
            if s and at >= 0:
                text, self.finish = text[:at], "stop"
        self.text = text

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
    """One token from the (V,) scores: argmax at temperature 0, else top-k / top-p sampling."""
    import torch

    if params.temperature <= 0:
        return int(scores.argmax())
    scores = scores.float() / params.temperature
    if params.top_k is not None and params.top_k < scores.shape[-1]:
        kth = scores.topk(params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, -1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < params.top_p  # always keeps the top token
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def pad(rows: list[list[int]], pad_id: int, *, left: bool) -> tuple[Any, Any]:
    """(ids, attention mask) of ``rows`` padded to the longest, on the left or the right."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(r, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def context_limit(config: Any) -> int | None:
    """The longest sequence the model's positions cover (GPT-2 ``n_positions``, Llama
    ``max_position_embeddings``); ``None`` when the config names none."""
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """``prompt``'s token ids; an empty prompt starts from BOS (else EOS), as GPT-2's
    unconditional samples do."""
    ids = list(tokenizer(prompt)["input_ids"])
    if ids:
        return ids
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [start]


def stop_ids_of(model: Any, tokenizer: Any) -> list[int]:
    """The tokens that end a reply: the model's generation config's EOS id(s) (an instruct
    model may list its end-of-turn token there), else the tokenizer's EOS."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


class _Decoder:
    """Feeds one step to a decoder-only model or to an encoder-decoder's decoder."""

    def __init__(self, model: Any, prompts: list[list[int]], pad_id: int, device: Any) -> None:
        import torch

        config = getattr(model, "config", None)
        self.model = model
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        ids, mask = pad(prompts, pad_id, left=not self.seq2seq)
        self.mask = mask.to(device)
        self.past: Any = None
        self.encoded: Any = None
        # peft's prompt tuning / prefix tuning of an encoder-decoder adds its virtual tokens
        # inside forward(input_ids=...): such a model re-reads the source at every step
        peft = getattr(model, "active_peft_config", None)
        self.reread = self.seq2seq and bool(getattr(peft, "is_prompt_learning", False))
        self.source = ids.to(device)
        if self.seq2seq and not self.reread:
            with torch.no_grad():
                self.encoded = model.get_encoder()(input_ids=self.source, attention_mask=self.mask)
        if self.seq2seq:
            start = config.decoder_start_token_id
            if start is None:
                start = pad_id
            self.first = torch.full((len(prompts), 1), start, dtype=torch.long, device=device)
            self.history = self.first  # what processors see: decoder start + generated
            self.prompt_width = 1
        else:
            self.first = ids.to(device)
            self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)  # real tokens from 0
            self.history = self.first
            self.prompt_width = ids.shape[1]

    def seen(self, b: int, prompt_len: int) -> Any:
        """Row ``b``'s own tokens so far, without padding."""
        if self.seq2seq:
            return self.history[b : b + 1]
        return self.history[b : b + 1, self.prompt_width - prompt_len :]

    def step(self, inputs: Any) -> Any:
        """(B, V) next-token logits after feeding ``inputs`` (the prompt, then one token)."""
        import torch

        with torch.no_grad():
            if self.reread:  # the whole decoder input every step, no cache (see __init__)
                out = self.model(
                    input_ids=self.source,
                    attention_mask=self.mask,
                    decoder_input_ids=self.history,
                )
                return out.logits[:, -1, :].float()
            if self.seq2seq:
                out = self.model(
                    encoder_outputs=self.encoded,
                    attention_mask=self.mask,
                    decoder_input_ids=inputs,
                    past_key_values=self.past,
                    use_cache=True,
                )
            else:
                out = self.model(
                    input_ids=inputs,
                    attention_mask=self.mask,
                    position_ids=self.positions,
                    past_key_values=self.past,
                    use_cache=True,
                )
        self.past = out.past_key_values
        return out.logits[:, -1, :].float()

    def advance(self, inputs: Any) -> None:
        import torch

        self.history = torch.cat([self.history, inputs], 1)
        if not self.seq2seq:
            self.mask = torch.cat([self.mask, torch.ones_like(inputs)], 1)
            self.positions = self.positions[:, -1:] + 1


def generate_batch(
    model: Any,
    tokenizer: Any,
    requests: list[GenRequest],
    *,
    stop_ids: Sequence[int],
    context: int | None = None,
    pad_id: int | None = None,
) -> list[GenResult]:
    """Every request's continuation, in one batch (see the module doc).

    Args:
        model: a causal LM or an encoder-decoder (``config.is_encoder_decoder``), plain
            transformers or wrapped by peft.
        stop_ids: tokens that end a row (EOS, end-of-turn) unless the row names its own;
            not part of the text.
        context: a decoder's position limit; a row ends ("length") when it is reached.
        pad_id: padding id; default the tokenizer's, else the first stop id.
    """
    import torch

    device = next(model.parameters()).device
    if pad_id is None:
        pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        pad_id = next(iter(stop_ids), 0)
    stops = set(stop_ids)
    rows = [_Row(r, tokenizer, device) for r in requests]
    dec = _Decoder(model, [r.prompt_ids for r in requests], pad_id, device)
    limit = max(r.params.max_tokens for r in requests)
    if context is not None and not dec.seq2seq:
        limit = min(limit, context - dec.prompt_width)
    inputs = dec.first
    for step in range(max(limit, 0)):
        logits = dec.step(inputs)  # (B, V)
        next_tokens = []
        for b, row in enumerate(rows):
            if row.finish is None and row.req.cancelled.is_set():
                row.finish = "cancelled"
            if row.finish is not None:
                next_tokens.append(pad_id)
                continue
            params = row.req.params
            scores = logits[b : b + 1]  # (1, V)
            # a processor sees what it would see alone: its prompt_length is len(prompt_ids)
            seen = dec.seen(b, len(row.req.prompt_ids))
            for process in params.logits_processors:
                scores = process(seen, scores)
            token = _sample(scores[0], params, row.generator)
            next_tokens.append(token)
            row.add(token, stops)
            if row.finish is None and any(
                bool(stop(torch.cat([seen, torch.tensor([[token]], device=device)], 1), scores))
                for stop in params.stop_criteria
            ):
                row.finish = "stop"
            row.flush()
        if all(r.finish is not None for r in rows) or step == limit - 1:
            break
        inputs = torch.tensor(next_tokens, device=device).unsqueeze(1)  # (B, 1)
        dec.advance(inputs)
    results = []
    for row in rows:
        if row.finish is None:  # the context (or max_tokens) ran out
            row.finish = "length"
        if not row.live and row.tokenizer is not None:  # None: the caller decodes token_ids
            row.decode()
        row.flush()
        results.append(GenResult(row.text, row.ids, row.finish, len(row.req.prompt_ids)))  # type: ignore[arg-type]
    return results
