"""Entry point of the data stage: load -> clean -> PII -> filter -> dedup -> split -> write.

Memory: the corpus is held as Python strings, and at its peak a document costs at most about
15 bytes per byte of its UTF-8 text however long it is (a 50 MB single line: 0.6 GB of
English, 0.7 GB of Chinese; before, 1.9 and 4.4 GB). Near dedup MinHashes a document longer
than 256k characters piece by piece, whitespace is tidied and hashed in 1M-character pieces,
and the filters count characters and words without a list of them (the quality filter's
word lists hold at most ``max_words`` words: longer documents are rejected first).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from lmforge.core.atomic import write_json_atomic
from lmforge.core.errors import DataError
from lmforge.core.hashing import fingerprint_path
from lmforge.core.metrics import MetricsLogger
from lmforge.core.stage import StageContext, StageResult, StageSpec
from lmforge.data.config import DataConfig
from lmforge.data.document import Document
from lmforge.data.pipeline import PipelineStats, dedup_docs, dedup_key, filter_docs, rewrite_texts
from lmforge.data.shards import write_shards
from lmforge.data.split import SPLITS, assign_split


def load_documents(cfg: DataConfig, stats: PipelineStats) -> tuple[list[Document], list[dict]]:
    from lmforge.data.sources import LoadStats, load_source

    docs: list[Document] = []
    per_source = []
    for src in cfg.sources:
        ls = LoadStats()
        docs.extend(load_source(src, ls))
        name = f"builtin:{src.builtin}" if src.builtin else str(src.path)
        per_source.append({"source": name, **asdict(ls)})
        if ls.undecodable_bytes:
            stats.warn(f"{name}: {ls.undecodable_bytes} undecodable bytes replaced with U+FFFD")
    if not docs:
        raise DataError(
            "the data sources yielded no documents; check the paths and formats in data.sources"
        )
    return docs, per_source


def build_corpus(cfg: DataConfig, out_dir: Path, seed: int, metrics: MetricsLogger) -> StageResult:
    """Build the corpus in ``out_dir`` (a temporary directory the runner swaps in on success)."""
    from lmforge.data.clean import length_reason
    from lmforge.data.quality import gopher_reason, language_reason

    stats = PipelineStats()
    docs, per_source = load_documents(cfg, stats)
    s = stats.begin("load", [])
    stats.end(s, docs)

    docs = rewrite_texts(docs, cfg, stats)
    c = cfg.clean
    docs = filter_docs(
        docs,
        "length",
        lambda d: None if d.image is not None else length_reason(d.text, c),
        cfg,
        stats,
        f"min_chars={c.min_chars}, max_chars={c.max_chars}",
    )
    if c.quality.enabled:
        docs = filter_docs(
            docs,
            "quality",
            lambda d: None if d.aligned else gopher_reason(d.text, c.quality),
            cfg,
            stats,
            "data.clean.quality (Gopher heuristics)",
        )
    if c.languages:
        langs = list(c.languages)
        docs = filter_docs(
            docs,
            "language",
            lambda d: None if d.image is not None else language_reason(d.text, langs),
            cfg,
            stats,
            f"data.clean.languages={langs}",
        )
    docs = dedup_docs(docs, cfg, stats, seed)

    by_split: dict[str, list[Document]] = {k: [] for k in SPLITS}
    for doc in docs:
        by_split[assign_split(dedup_key(doc), cfg.split.val, cfg.split.test)].append(doc)
    if not by_split["train"]:
        raise DataError(f"the train split is empty ({len(docs)} documents left); use more data")

    artifacts, split_stats = {}, {}
    for split, items in by_split.items():
        files = write_shards(items, out_dir, split, cfg.output_format, cfg.shard_docs)
        artifacts[split] = files[0] if len(files) == 1 else f"{split}-*.{cfg.output_format}"
        split_stats[split] = {
            "documents": len(items),
            "characters": sum(len(d.text) for d in items),
        }
        if not items and split != "train" and getattr(cfg.split, split) > 0:
            stats.warn(f"the {split} split is empty: too few documents for data.split.{split}")

    first, last = stats.steps[0], stats.steps[-1]
    report = {
        "documents_in": first.docs_out,
        "characters_in": first.chars_out,
        "documents_out": last.docs_out,
        "characters_out": last.chars_out,
        "sources": per_source,
        "steps": [asdict(x) for x in stats.steps],
        "splits": split_stats,
        "warnings": stats.warnings,
    }
    write_json_atomic(out_dir / "stats.json", report)
    artifacts["stats"] = "stats.json"

    pii = next(x for x in stats.steps if x.step == "pii").detail
    removed = {
        x.step: x.docs_in - x.docs_out
        for x in stats.steps
        if x.step not in ("load", "normalize", "pii")
    }
    result = {
        "documents_in": report["documents_in"],
        "documents_out": report["documents_out"],
        "characters_in": report["characters_in"],
        "characters_out": report["characters_out"],
        **{f"removed_{k}": v for k, v in removed.items()},
        "pii_replaced": sum(pii.values()),
        **{f"{k}_documents": v["documents"] for k, v in split_stats.items()},
    }
    metrics.log_dict("data", result)
    return StageResult(metrics=result, artifacts=artifacts)


def run_data_stage(ctx: StageContext, out: Path) -> StageResult:
    return build_corpus(ctx.recipe.data, out, ctx.recipe.seed, ctx.metrics)


def _inputs(recipe: Any) -> Any:
    return [fingerprint_path(s.path) if s.path else s.builtin for s in recipe.data.sources]


SPEC = StageSpec(
    name="data",
    config=DataConfig,
    description="Load, clean, deduplicate and split a corpus.",
    run=run_data_stage,
    inputs=_inputs,
)
