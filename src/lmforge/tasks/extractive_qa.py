"""Extractive question answering (SQuAD-style): the answer is a span of the context.
Head: ``AutoModelForQuestionAnswering`` (a start and an end logit per token).

Data: ``text_column`` holds the context, ``question_column`` the question and ``label_column``
the answer: its text, or SQuAD's ``{"text": ..., "answer_start": ...}``. Without
``answer_start`` the first occurrence in the context is used (and repeats are counted).

Long contexts are read in overlapping windows, as BERT's SQuAD recipe does (Devlin et al.
2019; transformers' ``run_qa.py``): question + a window of the context, ``stride`` tokens
shared by neighbouring windows. A window without the answer points both positions at [CLS];
at prediction the best-scoring span over all windows of an example wins.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lmforge.core.errors import DataError, LmforgeError
from lmforge.core.log import logger
from lmforge.data.document import Document
from lmforge.tasks.base import TASKS, Encoded, Splits, Task, TaskOptions, pad_sequences
from lmforge.tasks.classification import ENCODER_PRESETS
from lmforge.tasks.heads import head_loader

_MODEL_KEYS = ("input_ids", "token_type_ids")  # what collate passes on besides positions


@dataclass(frozen=True)
class QAInfo:
    """Decoding limits (as in ``run_qa.py``): starts/ends tried per window, longest answer."""

    n_best: int = 20
    max_answer_tokens: int = 30


def prepare(splits: Splits) -> QAInfo:
    """Every row needs a question and an answer text; where they are is checked in ``encode``."""
    for split, docs in splits.items():
        for field, column, missing in (
            ("question", "question_column", [i for i, d in enumerate(docs) if not d.question]),
            (
                "answer",
                "label_column",
                [i for i, d in enumerate(docs) if not isinstance(d.label, str) or not d.label],
            ),
        ):
            if missing:
                raise DataError(
                    f"extractive-qa: {len(missing)} '{split}' rows have no {field}, e.g. rows "
                    f"{missing[:5]}; check finetune.data.{column}"
                )
    return QAInfo()


def answer_starts(docs: list[Document], split: str) -> tuple[list[int | None], dict[str, int]]:
    """Character offset of each answer in its context (None: not there), and counted problems.

    A given ``answer_start`` must point at the answer; without one the first occurrence is
    taken, and contexts holding the answer more than once are counted as ambiguous.
    """
    starts: list[int | None] = []
    not_found, misplaced, ambiguous = [], [], 0
    for i, d in enumerate(docs):
        answer = str(d.label)
        if d.answer_start is not None:
            ok = d.text[d.answer_start : d.answer_start + len(answer)] == answer
            starts.append(d.answer_start if ok else None)
            if not ok:
                misplaced.append(i)
            continue
        pos = d.text.find(answer)
        starts.append(pos if pos >= 0 else None)
        if pos < 0:
            not_found.append(i)
        elif d.text.find(answer, pos + 1) >= 0:
            ambiguous += 1
    fate = "skipped" if split == "train" else "kept and scored (no model can get them right)"
    for rows, what in (
        (not_found, "an answer (label_column) that does not occur in their context (text_column)"),
        (misplaced, "an answer_start that does not point at their answer"),
    ):
        if rows:
            logger.warning(
                "extractive-qa: %d '%s' rows have %s, e.g. rows %s; %s",
                len(rows),
                split,
                what,
                rows[:5],
                fate,
            )
    if ambiguous:
        logger.info(
            "extractive-qa: %d '%s' answers occur more than once in their context and have no "
            "answer_start; the first occurrence is used",
            ambiguous,
            split,
        )
    counts = {"answer_not_found": len(not_found), "answer_start_mismatch": len(misplaced)}
    return starts, {**{k: v for k, v in counts.items() if v}, "answer_ambiguous": ambiguous}


def _fit_questions(tokenizer: Any, questions: list[str], max_tokens: int) -> tuple[list[str], int]:
    """Questions cut to ``max_tokens`` tokens, so every window keeps room for context."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out, cut = [], 0
    for q, offsets in zip(questions, enc["offset_mapping"], strict=True):
        if len(offsets) > max_tokens:
            q, cut = q[: offsets[max_tokens - 1][1]], cut + 1
        out.append(q)
    return out, cut


def _token_span(offsets: list, start: int, end: int) -> tuple[int, int] | None:
    """First and last token covering characters [start, end), if the window holds them all."""
    inside = [k for k, o in enumerate(offsets) if o is not None]
    if not inside or offsets[inside[0]][0] > start or offsets[inside[-1]][1] < end:
        return None
    first = next(k for k in inside if offsets[k][1] > start)
    last = next(k for k in reversed(inside) if offsets[k][0] < end)
    return first, last


def qa_collate(pad_id: int, virtual: int = 0) -> Any:
    """Padded model inputs plus start/end positions; bookkeeping keys are dropped. Positions
    move ``virtual`` places right for prompt tuning's virtual tokens, which peft prepends to
    the logits but not to the positions."""
    import torch

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {
            k: pad_sequences([f[k] for f in features], pad_id if k == "input_ids" else 0)
            for k in _MODEL_KEYS
            if k in features[0]
        }
        batch["attention_mask"] = pad_sequences([[1] * len(f["input_ids"]) for f in features], 0)
        for k in ("start_positions", "end_positions"):
            batch[k] = torch.tensor([f[k] + virtual for f in features], dtype=torch.long)
        return batch

    return collate


def encode(tokenizer: Any, docs: list[Document], info: QAInfo, options: Any, split: str) -> Encoded:
    """Question + context windows of ``opts.max_length`` tokens, ``opts.doc_stride`` shared.

    Each feature keeps ``example_id`` (its example's index), ``offsets`` (character span of
    each context token, None elsewhere) and ``context``, which ``predict`` maps spans back with.
    """
    opts = TaskOptions.of(options)
    if not getattr(tokenizer, "is_fast", False):
        raise LmforgeError(
            "extractive-qa needs a fast tokenizer (character offsets of tokens); "
            f"{type(tokenizer).__name__} is not one"
        )
    starts, warnings = answer_starts(docs, split)
    keep = [i for i, s in enumerate(starts) if s is not None or split != "train"]
    if not keep:
        raise DataError(
            f"extractive-qa: none of the {len(docs)} '{split}' rows has its answer in its "
            "context; check finetune.data.text_column / label_column"
        )
    virtual = opts.virtual_tokens
    max_length = opts.text_length  # prompt tuning's virtual tokens take positions too
    if max_length < 16:
        raise LmforgeError(
            f"extractive-qa: finetune.max_length={opts.max_length} leaves {max_length} tokens "
            f"for question + context{f' after {virtual} virtual tokens' if virtual else ''}; "
            "use at least 16 more"
        )
    questions, cut = _fit_questions(tokenizer, [docs[i].question for i in keep], max_length // 2)
    enc = tokenizer(
        questions,
        [docs[i].text for i in keep],
        truncation="only_second",
        max_length=max_length,
        stride=min(opts.doc_stride or max_length // 4, max_length // 2 - 8),
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    cls_id = tokenizer.cls_token_id
    features = []
    for f, ids in enumerate(enc["input_ids"]):
        example = enc["overflow_to_sample_mapping"][f]
        doc, start = docs[keep[example]], starts[keep[example]]
        sequence = enc.sequence_ids(f)
        offsets = [
            tuple(o) if sequence[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][f])
        ]
        cls = ids.index(cls_id) if cls_id in ids else 0
        span = None if start is None else _token_span(offsets, start, start + len(str(doc.label)))
        feature = {
            "input_ids": ids,
            "start_positions": cls if span is None else span[0],
            "end_positions": cls if span is None else span[1],
            "example_id": example,
            "offsets": offsets,
            "context": doc.text,
        }
        if "token_type_ids" in enc:
            feature["token_type_ids"] = enc["token_type_ids"][f]
        features.append(feature)
    windowed = sum(n > 1 for n in Counter(enc["overflow_to_sample_mapping"]).values())
    if windowed:
        logger.info(
            "extractive-qa: %d of %d '%s' examples are longer than max_length=%d and are read "
            "in overlapping windows (%d features in all)",
            windowed,
            len(keep),
            split,
            max_length,
            len(features),
        )
    warnings.update(question_truncated=cut, windowed_examples=windowed)
    refs = [[str(docs[i].label)] for i in keep]
    note = f"questions are longer than max_length/2 = {max_length // 2} tokens and were cut"
    return Encoded(
        features, refs, qa_collate(tokenizer.pad_token_id, virtual), cut, warnings, truncation=note
    )


load_model = head_loader("AutoModelForQuestionAnswering", "extractive-qa")


def best_span(
    start_logits: Any, end_logits: Any, offsets: list, n_best: int, max_tokens: int
) -> tuple[float, int, int] | None:
    """(score, first char, end char) of the best context span of one window, or None.

    Score = start logit + end logit over the ``n_best`` highest starts and ends, with
    start <= end, at most ``max_tokens`` tokens, both inside the context.
    """
    n = len(offsets)
    s, e = start_logits[:n].tolist(), end_logits[:n].tolist()
    top_s = sorted(range(n), key=lambda k: -s[k])[:n_best]
    top_e = sorted(range(n), key=lambda k: -e[k])[:n_best]
    best = None
    for i in top_s:
        for j in top_e:
            if offsets[i] is None or offsets[j] is None or not 0 <= j - i < max_tokens:
                continue
            if best is None or s[i] + e[j] > best[0]:
                best = (s[i] + e[j], offsets[i][0], offsets[j][1])
    return best


def predict(model: Any, data: Encoded, processor: Any, info: QAInfo, options: Any) -> list[str]:
    """The answer text of each example: its best span over all of its windows."""
    opts = TaskOptions.of(options)
    import torch

    model.eval()
    device = next(model.parameters()).device
    best: dict[int, tuple[float, str]] = {}
    virtual = opts.virtual_tokens
    size = opts.batch_size * 2
    for start in range(0, len(data), size):
        features = data.features[start : start + size]
        batch = data.collate(features)
        for k in ("start_positions", "end_positions"):
            batch.pop(k)
        with torch.no_grad():
            out = model(**{k: v.to(device) for k, v in batch.items()})
        starts = out.start_logits[:, virtual:].float().cpu()  # (B, T)
        ends = out.end_logits[:, virtual:].float().cpu()
        for f, s, e in zip(features, starts, ends, strict=True):
            span = best_span(s, e, f["offsets"], info.n_best, info.max_answer_tokens)
            ex = f["example_id"]
            if span is not None and (ex not in best or span[0] > best[ex][0]):
                best[ex] = (span[0], f["context"][span[1] : span[2]])
    return [best[i][1] if i in best else "" for i in range(len(data.references))]


def metrics(references: list[Any], predictions: list[Any], info: QAInfo) -> dict[str, Any]:
    from lmforge.evaluate.metrics import squad_metrics

    return squad_metrics(predictions, references)


# ---------------------------------------------------------------- classic baseline

_WORD = re.compile(r"\w+")
_STOP = {
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "from", "by", "with", "and", "or",
    "but", "is", "are", "was", "were", "be", "been", "as", "that", "this", "it", "its", "which",
    "who", "what", "when", "how", "many", "much", "did", "does", "do",
}  # fmt: skip
_CANDIDATE = re.compile(
    r"(?<!\w)(?:[$£€]?\d[\d,.]*(?:%| per ?cent| (?:million|billion|trillion|thousand))?"
    r"(?: (?:BC|BCE|AD|CE))?"  # numbers, money, percentages, years
    r"|\d{1,2}(?:st|nd|rd|th) century"
    r"|(?:[A-Z][\w'’.-]*)(?: (?:of |de |the |for )*[A-Z][\w'’.-]*)*)"  # capitalised phrases
)
_DATE_HINTS = ("when", "what year", "what date", "what decade", "what century")
_NUMBER_HINTS = ("how many", "how much", "what percentage")
_DATE_SPAN = re.compile(r"(?<![\d,.])\d{3,4}s?\b(?![,.]\d)|century|\b(?:BC|AD)\b")


def _answer_type(question: str) -> str:
    q = question.lower()
    if any(h in q for h in _DATE_HINTS):
        return "date"
    if any(h in q for h in _NUMBER_HINTS):
        return "number"
    return "name"


def _type_of(span: str) -> str:
    if _DATE_SPAN.search(span) and not re.search(r"[%$£€]", span):
        return "date"
    return "number" if span[:1].isdigit() or span[:1] in "$£€" else "name"


def sliding_window_answer(context: str, question: str) -> str:
    """The span a lexical baseline picks: Rajpurkar et al. (2016)'s sliding-window baseline.

    Candidates are numbers, dates and capitalised phrases (no parser here) whose type suits
    the wh-phrase and whose words are not all in the question. As in SQuAD's baseline, keep
    the candidates whose sentence (minus the candidate) has the largest unigram + bigram
    overlap with the question, then rank them by Richardson et al. (2013)'s sliding window
    (IC-weighted matches of question + candidate words in a window of that many words)
    minus their distance-based term (words to the nearest question word, normalised).
    """
    from lmforge.core.text import sentence_spans

    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(context)]
    if not words:
        return ""
    counts = Counter(w for _, _, w in words)
    ic = {w: math.log(1 + 1 / c) for w, c in counts.items()}
    q_words = [w.lower() for w in _WORD.findall(question)]
    q_set = set(q_words) - _STOP
    q_grams = set(q_words) | set(zip(q_words, q_words[1:], strict=False))
    wanted = _answer_type(question)
    spans = []
    for m in _CANDIDATE.finditer(context):
        text = m.group().rstrip(".,")
        cand_words = {w.lower() for w in _WORD.findall(text)}
        if cand_words and not cand_words <= set(q_words):
            spans.append((m.start(), m.start() + len(text), cand_words))
    typed = [c for c in spans if _type_of(context[c[0] : c[1]]) == wanted] or spans
    if not typed:
        return ""
    sentences = sentence_spans(context)
    q_positions = [k for k, (_, _, w) in enumerate(words) if w in q_set]

    def overlap(start: int, end: int) -> int:
        s, e = next(((a, b) for a, b in sentences if a <= start < b), (0, len(context)))
        toks = [w for a, b, w in words if s <= a < e and not (start <= a < end)]
        return len(q_grams & (set(toks) | set(zip(toks, toks[1:], strict=False))))

    def window_score(start: int, end: int, cand_words: set[str]) -> float:
        target = q_set | cand_words
        inside = [k for k, (a, _, _) in enumerate(words) if start <= a < end]
        first, last, size = inside[0], inside[-1], max(len(target), len(inside))
        sw = max(
            sum(ic[w] for _, _, w in words[j : j + size] if w in target)
            for j in range(max(0, last - size + 1), first + 1)
        )
        dist = min((min(abs(k - first), abs(k - last)) for k in q_positions), default=len(words))
        return sw - dist / max(1, len(words) - 1)

    top = max(overlap(s, e) for s, e, _ in typed)
    best = max(
        (c for c in typed if overlap(c[0], c[1]) == top),
        key=lambda c: window_score(c[0], c[1], c[2]),
    )
    return context[best[0] : best[1]]


def baseline(splits: Splits, info: QAInfo) -> dict[str, Any]:
    """The sliding-window lexical baseline on the test split (it learns nothing from train)."""
    test = splits["test"]
    preds = [sliding_window_answer(d.text, d.question or "") for d in test]
    scores = metrics([[str(d.label)] for d in test], preds, info)
    return {"method": "sliding-window (Richardson et al. 2013; SQuAD baseline)", **scores}


TASKS.add(
    "extractive-qa",
    Task(
        "extractive-qa",
        "extractive question answering: the answer is a span of the context (SQuAD)",
        "QUESTION_ANS",
        prepare,
        load_model,
        encode,
        predict,
        metrics,
        presets=ENCODER_PRESETS,
        baseline=baseline,
        main_metric="f1",
    ),
)
