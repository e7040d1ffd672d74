"""Guards for causal-LM generation: banned phrases, stop sequences, length caps, regex- or
JSON-schema-constrained decoding, and a classifier gate on prompt and response.

Every token-level guard is a transformers ``LogitsProcessor`` or ``StoppingCriteria``, so it
plugs into ``model.generate(logits_processor=..., stopping_criteria=...)`` and into lmforge's
one generation loop (``lmforge.models.sampling``: ``lmforge generate``, ``serve``);
``guarded_generate`` wires them all for one prompt. Guards work on the exact bytes each token
adds to the output (``token_bytes``), so a phrase split across tokens, or across the bytes of
one Chinese character, is still caught.

Guarantees (tested):
  * a banned phrase (ASCII case-insensitive) never appears in the generated text, whatever
    the prompt asks: every token that would complete it is masked before sampling;
  * a regex / JSON-schema constrained output always matches in full: tokens are masked to
    those the regex can still accept (outlines-core's token index), and only those that leave
    a way to finish within the remaining token budget, so the output never ends half-built;
  * a regex or schema no token sequence can satisfy within the budget is an error up front.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError

try:  # the base classes, when transformers is importable (it always is with torch)
    from transformers import LogitsProcessor, StoppingCriteria
except ImportError:  # pragma: no cover
    LogitsProcessor = StoppingCriteria = object  # type: ignore[misc,assignment]


# ---------------------------------------------------------------- token bytes


def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character -> byte (``bytes_to_unicode`` inverted)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1))
    bs += list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_SP_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def token_bytes(tokenizer: Any) -> list[bytes]:
    """The bytes each token id adds to the decoded output (``b""`` for special tokens).

    Byte-level BPE (GPT-2, Llama 3, SmolLM2, lmforge's ``bpe``) maps tokens back through its
    byte alphabet; SentencePiece maps ``▁`` to a space and ``<0xNN>`` to byte NN; anything else
    falls back to decoding the token alone.
    """
    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    out = [b""] * size
    specials = set(tokenizer.all_special_ids)
    decoder = _byte_level_decoder()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(getattr(backend, "decoder", None)).__name__
    byte_level = kind == "ByteLevel" or any("Ġ" in tok for tok in vocab)
    for tok, i in vocab.items():
        if i in specials:
            continue
        if byte_level and all(ch in decoder for ch in tok):
            out[i] = bytes(decoder[ch] for ch in tok)
        elif m := _SP_BYTE.match(tok):
            out[i] = bytes([int(m.group(1), 16)])
        elif "▁" in tok:
            out[i] = tok.replace("▁", " ").encode("utf-8")
        else:
            out[i] = tokenizer.decode([i]).encode("utf-8")
    return out


def generated_bytes(table: list[bytes], ids: list[int]) -> bytes:
    return b"".join(table[i] for i in ids)


# ---------------------------------------------------------------- banned phrases


class BannedPhrases(LogitsProcessor):
    """Mask every token that would complete a banned phrase in the generated text.

    For phrase ``p`` (lower-cased bytes) the tokens that complete it are those containing
    ``p`` whole, and - when the output so far ends with ``p[:i]`` - those starting with
    ``p[i:]``; both sets are precomputed per ``i`` once, so a step costs a few suffix checks.
    """

    def __init__(self, tokenizer: Any, phrases: list[str], prompt_length: int) -> None:
        phrases = [p for p in phrases if p.strip()]
        if not phrases:
            raise LmforgeError("banned phrases: the list is empty (or only blanks)")
        self.table = token_bytes(tokenizer)
        self.lower = [t.lower() for t in self.table]
        self.prompt_length = prompt_length
        self.phrases = [p.lower().encode("utf-8") for p in phrases]
        # (phrase, i) -> token ids that start with phrase[i:]; i == 0: contain the phrase
        self.completing: dict[tuple[int, int], list[int]] = {}
        for k, p in enumerate(self.phrases):
            self.completing[(k, 0)] = [t for t, b in enumerate(self.lower) if p in b]
            for i in range(1, len(p)):
                rest = p[i:]
                self.completing[(k, i)] = [
                    t for t, b in enumerate(self.lower) if b and b.startswith(rest)
                ]

    def banned_tokens(self, ids: list[int]) -> set[int]:
        """Token ids that must not come next after the generated ``ids``."""
        text = generated_bytes(self.lower, ids)
        out: set[int] = set()
        for k, p in enumerate(self.phrases):
            out.update(self.completing[(k, 0)])
            for i in range(1, len(p)):
                if text.endswith(p[:i]):
                    out.update(self.completing[(k, i)])
        return out

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        for row in range(input_ids.shape[0]):
            banned = self.banned_tokens(input_ids[row, self.prompt_length :].tolist())
            banned = [t for t in banned if t < scores.shape[-1]]
            if banned:
                scores[row, banned] = float("-inf")
        return scores


# ---------------------------------------------------------------- constrained decoding


def json_schema_regex(schema: dict[str, Any] | str) -> str:
    """The regex of JSON documents valid under ``schema`` (outlines-core's translation).

    Raises:
        LmforgeError: the schema is not valid JSON or uses what the translation lacks.
    """
    from outlines_core.json_schema import build_regex_from_schema

    text = schema if isinstance(schema, str) else json.dumps(schema)
    try:
        return build_regex_from_schema(text)
    except (ValueError, TypeError, RuntimeError) as e:
        raise LmforgeError(f"json schema: cannot build a constraint from it: {e}") from None


class RegexConstraint(LogitsProcessor):
    """Only tokens that keep the output a prefix of a ``pattern`` match, and that leave a way
    to complete the match within ``max_new_tokens``; EOS only once the match is complete.

    Raises:
        LmforgeError: the regex is invalid, or no output of at most ``max_new_tokens`` tokens
            of this vocabulary matches it (an unsatisfiable constraint).
    """

    def __init__(
        self, tokenizer: Any, pattern: str, prompt_length: int, max_new_tokens: int
    ) -> None:
        from outlines_core import Index, Vocabulary

        eos = tokenizer.eos_token_id
        if eos is None:
            raise LmforgeError("constrained decoding needs a tokenizer with an EOS token")
        try:
            re.compile(pattern)
        except re.error as e:
            raise LmforgeError(
                f"regex {pattern!r} is not a valid regular expression: {e}"
            ) from None
        table = token_bytes(tokenizer)
        tokens: dict[bytes, list[int]] = {}
        for i, b in enumerate(table):
            if b and i != eos:
                tokens.setdefault(b, []).append(i)
        try:
            self.index = Index(pattern, Vocabulary(eos, tokens))
        except (ValueError, RuntimeError) as e:
            raise LmforgeError(
                f"regex {pattern!r} uses syntax the constraint engine lacks (lookarounds, "
                f"backreferences) or no sequence of this tokenizer's tokens matches it ({e})"
            ) from None
        self.eos = eos
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.transitions: dict[int, dict[int, int]] = self.index.get_transitions()
        self.distance = self._distances()
        start = self.index.get_initial_state()
        need = self.distance.get(start)
        if need is None:
            raise LmforgeError(f"regex {pattern!r} can never be satisfied with this vocabulary")
        if need > max_new_tokens:
            raise LmforgeError(
                f"regex {pattern!r} needs at least {need} tokens, more than max_new_tokens "
                f"({max_new_tokens}); raise max_new_tokens"
            )
        self.states: dict[int, int] = {}  # row -> automaton state

    def _distances(self) -> dict[int, int]:
        """Fewest tokens from each state to an accepting one (BFS on reversed transitions)."""
        reverse: dict[int, set[int]] = {}
        for state, moves in self.transitions.items():
            for nxt in moves.values():
                reverse.setdefault(nxt, set()).add(state)
        finals = set(self.index.get_final_states())
        dist = {s: 0 for s in finals}
        queue = deque(finals)
        while queue:
            s = queue.popleft()
            for prev in reverse.get(s, ()):
                if prev not in dist:
                    dist[prev] = dist[s] + 1
                    queue.append(prev)
        return dist

    def allowed(self, state: int, remaining: int) -> list[int]:
        """Tokens allowed in ``state`` with ``remaining`` tokens left (this one included)."""
        out = [
            t
            for t, nxt in self.transitions.get(state, {}).items()
            if self.distance.get(nxt, remaining) <= remaining - 1
        ]
        if self.index.is_final_state(state):
            out.append(self.eos)
        return out

    def state_of(self, ids: list[int]) -> int:
        state = self.index.get_initial_state()
        for t in ids:
            if t == self.eos:
                break
            state = self.transitions[state][t]
        return state

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.prompt_length
        remaining = max(1, self.max_new_tokens - step)
        mask = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):
            state = self.state_of(input_ids[row, self.prompt_length :].tolist())
            allowed = [t for t in self.allowed(state, remaining) if t < scores.shape[-1]]
            mask[row, allowed] = 0
        return scores + mask


# ---------------------------------------------------------------- stopping


class StopOnSequences(StoppingCriteria):
    """Stop a row once its generated text contains any of ``stops`` (cut there afterwards)."""

    def __init__(self, tokenizer: Any, stops: list[str], prompt_length: int) -> None:
        self.table = token_bytes(tokenizer)
        self.stops = [s.encode("utf-8") for s in stops if s]
        self.prompt_length = prompt_length

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = [
            any(
                s in generated_bytes(self.table, input_ids[row, self.prompt_length :].tolist())
                for s in self.stops
            )
            for row in range(input_ids.shape[0])
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class MaxChars(StoppingCriteria):
    """Stop a row once its generated text has ``max_chars`` characters (cut there)."""

    def __init__(self, tokenizer: Any, max_chars: int, prompt_length: int) -> None:
        self.table = token_bytes(tokenizer)
        self.max_chars = max_chars
        self.prompt_length = prompt_length

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = [
            len(
                generated_bytes(self.table, input_ids[row, self.prompt_length :].tolist()).decode(
                    "utf-8", "ignore"
                )
            )
            >= self.max_chars
            for row in range(input_ids.shape[0])
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def cut_text(text: str, stops: list[str], max_chars: int | None) -> tuple[str, str | None]:
    """``text`` cut before the first stop sequence and to ``max_chars``; and why it was cut."""
    reason = None
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if hits:
        text = text[: min(hits)[0]]
        reason = "stop"
    if max_chars is not None and len(text) > max_chars:
        text, reason = text[:max_chars], "max_chars"
    return text, reason


# ---------------------------------------------------------------- classifier gate


@dataclass
class ClassifierGate:
    """Refuse a prompt or a response that a text classifier puts in a ``refuse`` class with
    probability at least ``threshold`` (e.g. a toxicity or topic classifier from finetune)."""

    classifier: Any  # lmforge.explain.classifier.Classifier
    refuse: list[str]
    threshold: float = 0.5

    @classmethod
    def load(cls, path: str, refuse: list[str], threshold: float = 0.5) -> ClassifierGate:
        """A gate from a saved classifier (``load_artifact``); unknown classes are an error."""
        from lmforge.explain.classifier import Classifier
        from lmforge.tasks.artifact import load_artifact

        clf = Classifier.from_artifact(load_artifact(path))
        unknown = [c for c in refuse if c not in clf.labels]
        if unknown or not refuse:
            raise LmforgeError(
                f"gate: refuse classes {unknown or refuse} are not among the gate model's "
                f"classes {clf.labels}"
            )
        return cls(clf, refuse, threshold)

    def flags(self, text: str) -> str | None:
        """The refused class ``text`` falls in, or None when it passes."""
        probs = self.classifier.probs([text])[0]
        for name in self.refuse:
            if probs[self.classifier.labels.index(name)] >= self.threshold:
                return name
        return None


# ---------------------------------------------------------------- one guarded generation


@dataclass
class Guards:
    """What ``guarded_generate`` enforces; every field is optional."""

    banned: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    max_new_tokens: int = 100
    max_chars: int | None = None
    regex: str | None = None
    json_schema: dict[str, Any] | str | None = None
    gate: ClassifierGate | None = None


def guards_from_options(
    *,
    ban: list[str] | None = None,
    stop: list[str] | None = None,
    max_chars: int | None = None,
    regex: str | None = None,
    json_schema: Path | None = None,
    gate: str | None = None,
    gate_refuse: list[str] | None = None,
    gate_threshold: float = 0.5,
    max_new_tokens: int = 100,
) -> Guards | None:
    """The guards a command line asked for (``lmforge generate --ban ... --json-schema F``),
    or None when it asked for none; a gate needs the classes it refuses."""
    if not any((ban, stop, max_chars, regex, json_schema, gate)):
        return None
    schema = None
    if json_schema is not None:
        try:
            schema = json.loads(Path(json_schema).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise LmforgeError(
                f"--json-schema {json_schema}: not a readable JSON file ({e})"
            ) from None
    if gate is not None and not gate_refuse:
        raise LmforgeError("--gate needs the classes to refuse: --gate-refuse LABEL")
    return Guards(
        banned=list(ban or []),
        stop=list(stop or []),
        max_new_tokens=max_new_tokens,
        max_chars=max_chars,
        regex=regex,
        json_schema=schema,
        gate=ClassifierGate.load(gate, list(gate_refuse or []), gate_threshold) if gate else None,
    )


@dataclass(frozen=True)
class GuardedOutput:
    text: str  # the response ("" when refused)
    finish: str  # "eos", "length", "stop", "max_chars" or "refused"
    refused: str | None = None  # "prompt: <class>" or "response: <class>"


def guard_processors(
    tokenizer: Any, guards: Guards, prompt_length: int, max_new_tokens: int
) -> tuple[list[Any], list[Any]]:
    """(logits processors, stopping criteria) for ``guards`` after a ``prompt_length`` prompt;
    hand them to ``model.generate(logits_processor=..., stopping_criteria=...)``."""
    if guards.regex is not None and guards.json_schema is not None:
        raise LmforgeError("give a regex or a JSON schema, not both")
    processors: list[Any] = []
    criteria: list[Any] = []
    if guards.banned:
        processors.append(BannedPhrases(tokenizer, guards.banned, prompt_length))
    pattern = guards.regex
    if guards.json_schema is not None:
        pattern = json_schema_regex(guards.json_schema)
    if pattern is not None:
        processors.append(RegexConstraint(tokenizer, pattern, prompt_length, max_new_tokens))
    if guards.stop:
        criteria.append(StopOnSequences(tokenizer, guards.stop, prompt_length))
    if guards.max_chars is not None:
        criteria.append(MaxChars(tokenizer, guards.max_chars, prompt_length))
    return processors, criteria


def guarded_generate(
    model: Any,
    tokenizer: Any,
    prompt: str,
    guards: Guards,
    *,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    seed: int = 0,
    ids: list[int] | None = None,
) -> GuardedOutput:
    """Generate a continuation of ``prompt`` under ``guards`` (see the module doc), through
    lmforge's one generation loop; ``ids``: the prompt as the model reads it, when that is not
    plain tokenization (a chat template).

    The gate checks the prompt before any generation and the response after it; a flagged
    one is refused and its text withheld.
    """
    from lmforge.models.sampling import (
        GenRequest,
        SamplingParams,
        generate_batch,
        prompt_ids,
        stop_ids_of,
    )

    if guards.gate is not None and (flag := guards.gate.flags(prompt)):
        return GuardedOutput("", "refused", f"prompt: {flag}")
    ids = prompt_ids(tokenizer, prompt) if ids is None else ids
    processors, criteria = guard_processors(tokenizer, guards, len(ids), guards.max_new_tokens)
    params = SamplingParams(
        guards.max_new_tokens,
        temperature,
        top_k=top_k,
        top_p=1.0 if top_p is None else top_p,
        seed=seed,
        logits_processors=processors,
        stop_criteria=criteria,
    )
    eos = stop_ids_of(model, tokenizer)
    (out,) = generate_batch(model, tokenizer, [GenRequest(ids, params)], stop_ids=eos)
    finish = "length" if out.finish_reason == "length" else "eos"
    text, cut = cut_text(out.text, guards.stop, guards.max_chars)
    finish = cut or finish
    if guards.gate is not None and (flag := guards.gate.flags(text)):
        return GuardedOutput("", "refused", f"response: {flag}")
    return GuardedOutput(text, finish)
