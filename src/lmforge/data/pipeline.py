"""The data pipeline: each step takes documents and returns the ones it keeps, with counts.

Steps are recorded in ``stats.json`` as documents and characters in/out plus a few removed
examples, so a user can see what each filter did to their corpus and tune it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmforge.core.errors import DataError
from lmforge.core.log import logger
from lmforge.core.progress import progress_bar
from lmforge.data.config import DataConfig
from lmforge.data.document import Document

EXAMPLE_CHARS = 300


def _chars(docs: list[Document]) -> int:
    return sum(len(d.text) for d in docs)


@dataclass
class StepStats:
    step: str
    docs_in: int
    chars_in: int
    docs_out: int = 0
    chars_out: int = 0
    removed_examples: list[dict[str, str]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineStats:
    steps: list[StepStats] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def begin(self, step: str, docs: list[Document]) -> StepStats:
        s = StepStats(step, len(docs), _chars(docs))
        self.steps.append(s)
        return s

    def end(self, s: StepStats, docs: list[Document]) -> None:
        s.docs_out, s.chars_out = len(docs), _chars(docs)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        logger.warning(message)


def _example(doc: Document, reason: str) -> dict[str, str]:
    text = doc.text if len(doc.text) <= EXAMPLE_CHARS else doc.text[:EXAMPLE_CHARS] + "…"
    return {
        "reason": reason,
        "text": text,
        **{k: v for k, v in doc.meta.items() if k in ("source", "id", "title")},
    }


def rewrite_texts(docs: list[Document], cfg: DataConfig, stats: PipelineStats) -> list[Document]:
    """Normalise text and scrub PII in place; annotated documents (NER tokens, images) are left
    untouched because rewriting would break the alignment of their labels."""
    from lmforge.data.clean import rewrite
    from lmforge.data.pii import scrub_pii

    s = stats.begin("normalize", docs)
    pii_counts: Counter[str] = Counter()
    changed = aligned = 0
    types = cfg.pii.types if cfg.pii.enabled else []
    with progress_bar("clean + PII", len(docs)) as advance:
        for doc in docs:
            advance(1)
            if doc.aligned:
                aligned += 1
                continue
            text = rewrite(doc.text, cfg.clean)
            if types:
                text, found = scrub_pii(text, types)
                pii_counts.update(found)
            if text != doc.text:
                changed += 1
                doc.text = text
    s.detail = {"changed_documents": changed, "annotated_not_rewritten": aligned}
    stats.end(s, docs)
    p = stats.begin("pii", docs)
    p.detail = {t: pii_counts.get(t, 0) for t in types}
    stats.end(p, docs)
    return docs


def rule_of(reason: str) -> str:
    """The rule behind a removal reason, for counting: ``"dup_line_frac 0.45 > 0.3"`` ->
    ``"dup_line_frac"``; reasons without a per-document value are their own rule."""
    head = reason.split(" ", 1)[0]
    return head if "_" in head else reason


def filter_docs(
    docs: list[Document],
    step: str,
    reason_of: Callable[[Document], str | None],
    cfg: DataConfig,
    stats: PipelineStats,
    describe: str,
) -> list[Document]:
    """Keep documents for which ``reason_of`` is None; count removals per reason."""
    s = stats.begin(step, docs)
    kept: list[Document] = []
    reasons: Counter[str] = Counter()
    with progress_bar(step, len(docs)) as advance:
        for doc in docs:
            advance(1)
            reason = reason_of(doc)
            if reason is None:
                kept.append(doc)
                continue
            reasons[rule_of(reason)] += 1
            if len(s.removed_examples) < cfg.examples_per_filter:
                s.removed_examples.append(_example(doc, reason))
    s.detail = {"removed_by_rule": dict(reasons)}
    stats.end(s, kept)
    if docs and not kept:
        raise DataError(
            f"the '{step}' filter removed all {len(docs)} documents ({describe}); "
            f"loosen it in the recipe's data section. Reasons: {dict(reasons)}"
        )
    if len(docs) and len(kept) < 0.5 * len(docs):
        stats.warn(
            f"the '{step}' filter removed {len(docs) - len(kept)} of {len(docs)} documents ({describe})"
        )
    return kept


def dedup_key(doc: Document) -> str:
    """What identifies a document for dedup and splitting: its text, or its pixels for images."""
    if doc.image is not None:
        return json.dumps(doc.image)
    return doc.text


def example_key(doc: Document) -> str:
    """What makes two examples exact duplicates: ``dedup_key`` plus a text label.

    One prompt with two different replies (chit-chat, instruction data) is two real examples,
    so both are kept; splitting still hashes ``dedup_key`` alone, so they share a split and
    no test prompt is seen in training. Same-label copies (BBC's repeated articles) dedup as
    before. Extractive QA adds the question: several questions share one context (and one
    split, so no test context is seen in training).
    """
    key = dedup_key(doc)
    if doc.question is not None:
        key += "\x1f" + doc.question
    if isinstance(doc.label, str) and doc.image is None:
        key += "\x1f" + doc.label
    return key


def dedup_docs(
    docs: list[Document], cfg: DataConfig, stats: PipelineStats, seed: int
) -> list[Document]:
    from lmforge.data.dedup import exact_dedup, near_dedup

    d = cfg.dedup
    if d.exact:
        s = stats.begin("exact_dedup", docs)
        keep = set(exact_dedup([example_key(x) for x in docs]))
        removed = [x for i, x in enumerate(docs) if i not in keep]
        s.removed_examples = [
            _example(x, "exact duplicate") for x in removed[: cfg.examples_per_filter]
        ]
        docs = [x for i, x in enumerate(docs) if i in keep]
        stats.end(s, docs)
    textual = [x for x in docs if x.image is None]
    if d.near and textual:
        s = stats.begin("near_dedup", docs)
        # one MinHash per distinct text: examples sharing a text (QA questions on one context,
        # replies to one prompt) are kept or dropped together, and identical examples
        # (same ``example_key``) still count as duplicates
        first: dict[str, Document] = {}
        for x in textual:
            first.setdefault(x.text, x)
        units = list(first.values())
        with progress_bar("near-dedup (MinHash)", len(units)) as advance:
            res = near_dedup(
                [x.text for x in units],
                threshold=d.threshold,
                num_perm=d.num_perm,
                bands=d.bands,
                shingle=d.shingle,
                ngram=d.ngram,
                seed=seed,
                progress=advance,
            )
        kept_texts = {units[i].text for i in res.keep}
        keep, seen = set(), set()
        for x in textual:
            if x.text in kept_texts and (key := example_key(x)) not in seen:
                seen.add(key)
                keep.add(id(x))
        for cluster in res.clusters[: cfg.examples_per_filter]:
            s.removed_examples.append(
                {
                    "reason": "near duplicate",
                    "kept": _example(units[cluster[0]], "")["text"],
                    "removed": _example(units[cluster[1]], "")["text"],
                }
            )
        s.detail = {
            "clusters": len(res.clusters),
            "verified_pairs": res.pairs,
            "threshold": d.threshold,
        }
        docs = [x for x in docs if x.image is not None or id(x) in keep]
        stats.end(s, docs)
    return docs
