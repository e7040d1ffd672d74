"""Corrections from the feedback store -> training documents, per task, and the training file.

A correction is what ``POST /v1/feedback`` stored for a served response, in the shape of that
route's answer:

- classification (``/v1/classify``): a label, or a list of labels for a multi-label model;
- token-classification (``/v1/ner``): the right entities, ``[{"type", "start", "end"}]``
  with character offsets into the text (as ``/v1/ner`` answers; ``[]``: no entity). They
  become tags on the words the server tagged (``serve.runners.words``: one CJK character, a
  run of word characters, or a punctuation mark), in the model's scheme (BIO or IOBES);
- extractive-qa (``/v1/qa``): the answer text, or ``{"answer", "start"}`` (``start``: its
  character offset in the context; without it, the answer's first occurrence);
- translation (``/v1/translate``): the right translation;
- instruction (``/v1/completions``, ``/v1/chat/completions``): the right reply.

The input is the feedback's ``input`` (QA: ``{"question", "context"}``), else the logged one
(``--log-inputs``) when the request had one text. Rows that cannot become a training example
are skipped and counted by reason: ``no_input``, ``unknown_label`` (a label or entity type the
model does not know, or a correction of the wrong shape), ``misaligned`` (entity offsets that
do not fall on word boundaries, or an answer that is not in the context), ``other_route``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.data.document import Document

ROUTES = {
    "classification": ("/v1/classify",),
    "token-classification": ("/v1/ner",),
    "extractive-qa": ("/v1/qa",),
    "translation": ("/v1/translate",),
    "instruction": ("/v1/completions", "/v1/chat/completions"),
}
SKIP_REASONS = ("no_input", "unknown_label", "misaligned", "other_route")


class Skip(Exception):
    """A correction that cannot become a training example; ``reason`` is a SKIP_REASONS key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def correction_docs(
    rows: list[dict[str, Any]], task: str, info: Any
) -> tuple[list[Document], dict[str, int]]:
    """Training documents from feedback rows (``read_corrections``), and the skips by reason.

    Args:
        task: the fine-tune's task name (a ``ROUTES`` key).
        info: the task's label space from the model's manifest (labels, multi_label).
    """
    docs: list[Document] = []
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    for row in rows:
        try:
            if row["route"] is not None and row["route"] not in ROUTES[task]:
                raise Skip("other_route")
            doc = CONVERTERS[task](row["input"], row["correction"], info)
        except Skip as s:
            skipped[s.reason] += 1
            continue
        doc.meta["id"] = row["response_id"]
        docs.append(doc)
    return docs, skipped


def input_text(value: Any) -> str | None:
    """The one text a response answered: a string, a one-text list, or a chat's last user turn."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        users = [m.get("content") for m in value if m.get("role") == "user"]
        return users[-1] if users and isinstance(users[-1], str) else None
    return None


def _text(value: Any) -> str:
    text = input_text(value)
    if text is None:
        raise Skip("no_input")
    return text


def _label(value: Any, correction: Any, info: Any) -> Document:
    known = set(getattr(info, "labels", None) or [])
    multi = bool(getattr(info, "multi_label", False))
    names = correction if isinstance(correction, list) else [correction]
    if (isinstance(correction, list) and not multi) or any(
        not isinstance(x, str) or x not in known for x in names
    ):
        raise Skip("unknown_label")
    text = _text(value)
    return Document(text, label=list(names) if multi else correction)  # one label: [it]


def _reply(value: Any, correction: Any, info: Any) -> Document:
    if not isinstance(correction, str):
        raise Skip("unknown_label")
    return Document(_text(value), label=correction)


def _entities(value: Any, correction: Any, info: Any) -> Document:
    from lmforge.serve.runners import words

    if isinstance(correction, dict) and "entities" in correction:  # the /v1/ner result shape
        correction = correction["entities"]
    if not isinstance(correction, list) or not all(
        isinstance(e, dict) and isinstance(e.get("type"), str) for e in correction
    ):
        raise Skip("unknown_label")
    text = _text(value)
    spans = words(text)
    tags = ["O"] * len(spans)
    labels = set(getattr(info, "labels", None) or [])
    iobes = any(t.startswith(("E-", "S-")) for t in labels)
    starts = {s: i for i, (_, s, _) in enumerate(spans)}
    ends = {e: i for i, (_, _, e) in enumerate(spans)}
    for e in correction:
        first, last = starts.get(e.get("start")), ends.get(e.get("end"))
        if first is None or last is None or last < first:
            raise Skip("misaligned")  # offsets inside a word: the model tags whole words
        if any(t != "O" for t in tags[first : last + 1]):
            raise Skip("misaligned")  # overlaps another corrected entity
        kind = e["type"]
        inner = [f"I-{kind}"] * (last - first + 1)
        inner[0] = f"B-{kind}"
        if iobes:
            inner = [f"S-{kind}"] if first == last else [*inner[:-1], f"E-{kind}"]
        if any(t not in labels for t in set(inner)):
            raise Skip("unknown_label")
        tags[first : last + 1] = inner
    if not spans:
        raise Skip("no_input")
    tokens = [w for w, _, _ in spans]
    joiner = "" if all(len(t) == 1 for t in tokens) else " "
    return Document(joiner.join(tokens), tokens=tokens, tags=tags)


def _answer(value: Any, correction: Any, info: Any) -> Document:
    if not (
        isinstance(value, dict)
        and isinstance(value.get("question"), str)
        and isinstance(value.get("context"), str)
    ):
        raise Skip("no_input")
    context, start = value["context"], None
    if isinstance(correction, dict):
        correction, start = correction.get("answer"), correction.get("start")
    if (
        not isinstance(correction, str)
        or not correction
        or not (start is None or isinstance(start, int))
    ):
        raise Skip("unknown_label")
    if start is None:
        start = context.find(correction)
    if start < 0 or context[start : start + len(correction)] != correction:
        raise Skip("misaligned")
    return Document(context, label=correction, question=value["question"], answer_start=start)


CONVERTERS = {
    "classification": _label,
    "token-classification": _entities,
    "extractive-qa": _answer,
    "translation": _reply,
    "instruction": _reply,
}


def write_training_file(
    path: Path, docs: list[Document], task: str, columns: dict[str, str | None]
) -> Path:
    """Documents as JSON lines with the recipe's columns, read back as the recipe reads data.

    JSON keeps what a CSV cell would flatten into a string: a multi-label list, NER's token
    and tag lists, QA's ``{"text", "answer_start"}``. Written as ASCII (``\\u`` escapes), so it
    decodes the same under the recipe's ``finetune.data.encoding`` (utf-8, gbk, big5, ...).

    Args:
        columns: ``text``, ``label`` and (extractive QA) ``question`` column names.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="ascii") as f:
        for d in docs:
            if task == "token-classification":
                row: dict[str, Any] = {columns["text"]: d.tokens, columns["label"]: d.tags}
            elif task == "extractive-qa":
                answer = {"text": d.label, "answer_start": d.answer_start}
                row = {columns["text"]: d.text, columns["question"]: d.question,
                       columns["label"]: answer}  # fmt: skip
            else:
                row = {columns["text"]: d.text, columns["label"]: d.label}
            f.write(json.dumps(row, ensure_ascii=True) + "\n")
    return path
