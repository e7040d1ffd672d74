"""One forward pass per batch of requests, for each task a route serves.

Each runner takes the ``ServedModel`` and a list of inputs (one per request item, gathered by
the batcher) and returns one JSON-ready result per input, in order. They run in the server's
single model thread, never concurrently, and reuse the tasks' own code where its output is
what a client needs (NER's chunking + Viterbi decode, translation's greedy decode).
"""

from __future__ import annotations

import re
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.data.document import Document
from lmforge.serve.loader import ServedModel
from lmforge.tasks.base import TaskOptions

# NER words: one CJK character each (as People's Daily is annotated), full-width digits and
# letters too ("１９９８" is four tokens there), else a run of word characters, else one
# punctuation mark (CoNLL tokenisation); spaces separate and are dropped
_WORD = re.compile(
    r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af\uff01-\uff5e]"
    r"|[^\W_]+|[^\w\s]|_+"
)


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _scores(sm: ServedModel, logits: Any, top_k: int | None) -> list[dict[str, Any]]:
    """Label + per-label probability (softmax; sigmoid for multi-label) of each logits row."""
    multi = bool(getattr(sm.info, "multi_label", False))
    probs = logits.sigmoid() if multi else logits.softmax(-1)
    labels = sm.labels or [str(i) for i in range(logits.shape[-1])]
    out = []
    for row in probs.tolist():
        ranked = sorted(zip(labels, row, strict=False), key=lambda x: -x[1])
        if top_k:
            ranked = ranked[:top_k]
        if multi:
            label: Any = [name for name, p in zip(labels, row, strict=False) if p > 0.5]
        else:
            label = ranked[0][0]
        out.append({"label": label, "scores": {name: round(p, 6) for name, p in ranked}})
    return out


def classify(sm: ServedModel, texts: list[str], top_k: int | None = None) -> list[dict[str, Any]]:
    """Label and label probabilities of each text (truncated to the model's max length)."""
    import torch

    tok = sm.processor
    enc = tok(texts, truncation=True, max_length=TaskOptions.of(sm.cfg).text_length, padding=True)
    batch = {k: torch.tensor(v).to(_device(sm.model)) for k, v in enc.items()}
    with torch.no_grad():
        logits = sm.model(**batch).logits.float().cpu()
    return _scores(sm, logits, top_k)


def classify_images(
    sm: ServedModel, images: list[list], top_k: int | None = None
) -> list[dict[str, Any]]:
    """Label and label probabilities of each image (rows of grey values or [r, g, b])."""
    import torch

    from lmforge.tasks.image_classification import pixel_values

    x = pixel_values(sm.processor, images).to(_device(sm.model))
    with torch.no_grad():
        logits = sm.model(pixel_values=x).logits.float().cpu()
    return _scores(sm, logits, top_k)


def words(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) character spans NER tags; CJK characters are one word each."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def entities(text: str, spans: list[tuple[str, int, int]], tags: list[str]) -> list[dict]:
    """BIO/IOBES tags per word -> entities with character offsets into ``text``."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for (_, start, end), tag in zip(spans, tags, strict=True):
        prefix, kind = tag[:2], tag[2:]
        if tag == "O" or (prefix in ("I-", "E-") and (current is None or current["type"] != kind)):
            if current is not None:
                found.append(current)
            current = None
            if tag == "O":
                continue
            prefix = "B-"  # an I- without its B- opens an entity, as seqeval reads it
        if prefix in ("B-", "S-") or current is None:
            if current is not None:
                found.append(current)
            current = {"type": kind, "start": start, "end": end}
        else:
            current["end"] = end
        if prefix in ("E-", "S-"):
            found.append(current)
            current = None
    if current is not None:
        found.append(current)
    for e in found:
        e["text"] = text[e["start"] : e["end"]]
    return found


def ner(sm: ServedModel, texts: list[str]) -> list[dict[str, Any]]:
    """Entities of each text, with ``start``/``end`` character offsets into that text."""
    task = _task(sm)
    spans = [words(t) for t in texts]
    present = [i for i, s in enumerate(spans) if s]
    docs = [
        Document(texts[i], tokens=[w for w, _, _ in spans[i]], tags=["O"] * len(spans[i]))
        for i in present
    ]
    tags: dict[int, list[str]] = {}
    if docs:
        enc = task.encode(sm.processor, docs, sm.info, sm.cfg, "test")
        predicted = task.predict(sm.model, enc, sm.processor, sm.info, sm.cfg)
        tags = dict(zip(present, predicted, strict=True))
    return [
        {"entities": entities(t, spans[i], tags[i]) if i in tags else []}
        for i, t in enumerate(texts)
    ]


def answer(sm: ServedModel, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The best answer span of each (question, context), with character offsets and score.

    Long contexts are read in overlapping windows (the model's max length, the run's stride).
    """
    import torch

    from lmforge.tasks.extractive_qa import best_span

    tok = sm.processor
    questions, contexts = [q for q, _ in items], [c for _, c in items]
    opts = TaskOptions.of(sm.cfg)
    max_length, virtual = opts.text_length, opts.virtual_tokens
    enc = tok(
        questions,
        contexts,
        truncation="only_second",
        max_length=max_length,
        stride=min(sm.cfg.doc_stride or max_length // 4, max_length // 2 - 8),
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=True,
    )
    sample = enc.pop("overflow_to_sample_mapping")
    offsets_all = enc.pop("offset_mapping")
    batch = {k: torch.tensor(v).to(_device(sm.model)) for k, v in enc.items()}
    with torch.no_grad():
        out = sm.model(**batch)
    n_best = getattr(sm.info, "n_best", 20)
    max_tokens = getattr(sm.info, "max_answer_tokens", 30)
    best: dict[int, tuple[float, int, int]] = {}
    for f in range(len(sample)):
        seq = enc.sequence_ids(f)
        offsets = [tuple(o) if seq[k] == 1 else None for k, o in enumerate(offsets_all[f])]
        # prompt tuning: the logits of the virtual tokens come first
        starts, ends = out.start_logits[f, virtual:].float(), out.end_logits[f, virtual:].float()
        span = best_span(starts, ends, offsets, n_best, max_tokens)
        i = sample[f]
        if span is not None and (i not in best or span[0] > best[i][0]):
            best[i] = span
    results = []
    for i, context in enumerate(contexts):
        if i not in best:
            results.append({"answer": "", "start": None, "end": None, "score": None})
            continue
        score, start, end = best[i]
        results.append(
            {"answer": context[start:end], "start": start, "end": end, "score": round(score, 4)}
        )
    return results


def translate(sm: ServedModel, texts: list[str], max_tokens: int) -> list[dict[str, Any]]:
    """Greedy translation of each text (the translation task's own decode)."""
    from lmforge.tasks.generation import decode, greedy_generate
    from lmforge.tasks.translation import token_ids

    ids, cut = token_ids(sm.processor, texts, sm.cfg.max_length)
    out = greedy_generate(
        sm.model,
        ids,
        pad_id=sm.processor.pad_token_id,
        stop_ids=[sm.processor.eos_token_id],
        max_new_tokens=max_tokens,
        batch_size=max(len(ids), 1),
    )
    return [
        {"translation": text, "truncated_input": c, "finished": s}
        for text, c, s in zip(decode(sm.processor, out.ids), cut, out.stopped, strict=True)
    ]


def embed(sm: ServedModel, texts: list[str]) -> list[tuple[list[float], int]]:
    """Mean-pooled, L2-normalised last hidden states (over real tokens) and token counts."""
    import torch

    tok = sm.processor
    enc = tok(texts, truncation=True, max_length=_embed_length(sm), padding=True)
    batch = {k: torch.tensor(v).to(_device(sm.model)) for k, v in enc.items()}
    with torch.no_grad():
        out = sm.model(**batch, output_hidden_states=True)
    if getattr(out, "hidden_states", None) is None:  # an ONNX graph exports logits only
        raise LmforgeError(
            f"/v1/embeddings needs a model that returns hidden states; {sm.name} ({sm.kind}) "
            "does not: serve its transformers directory for embeddings"
        )
    hidden = out.hidden_states[-1].float()
    mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, C)
    pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu()
    counts = batch["attention_mask"].sum(1).tolist()
    return [(row, int(n)) for row, n in zip(pooled.tolist(), counts, strict=True)]


def _embed_length(sm: ServedModel) -> int:
    from lmforge.models.sampling import context_limit

    limit = context_limit(getattr(sm.model, "config", None)) or sm.cfg.max_length
    return min(limit, max(sm.cfg.max_length, 512))


def _task(sm: ServedModel) -> Any:
    from lmforge.tasks.base import TASKS

    return TASKS.get(sm.task)
