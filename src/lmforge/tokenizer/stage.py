"""Entry point of the tokenizer stage: read text -> train -> measure on val -> save."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError
from lmforge.core.hashing import fingerprint_path
from lmforge.core.log import logger
from lmforge.core.metrics import MetricsLogger
from lmforge.core.stage import StageContext, StageResult, StageSpec
from lmforge.data.document import Document
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.train import measure, save_tokenizer, to_transformers, train_tokenizer


def _read_files(files: list[Path]) -> list[str]:
    texts: list[str] = []
    for path in files:
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in paths:
            texts.extend(
                line
                for line in p.read_text(encoding="utf-8", errors="replace").splitlines()
                if line.strip()
            )
    return texts


def _split_texts(docs: list[Document]) -> list[str]:
    """Each document's text; translation pairs (``meta["target_lang"]``, set by the parallel
    datasets) add their target sentence (the label), so one vocabulary covers both languages
    of a seq2seq model. Class labels, tags and answers are not text to learn from."""
    from lmforge.data.builtin_parallel import TARGET_LANG_META

    texts = []
    for d in docs:
        if d.text:
            texts.append(d.text)
        if TARGET_LANG_META in d.meta and isinstance(d.label, str) and d.label:
            texts.append(d.label)
    return texts


def training_texts(cfg: TokenizerConfig, data_dir: Path | None) -> tuple[list[str], list[str]]:
    """(train, eval) texts: the data stage's train/val splits, or the configured files."""
    if cfg.files:
        texts = _read_files(cfg.files)
        cut = max(1, len(texts) // 20)
        train, val = texts[:-cut] or texts, texts[-cut:]
    elif data_dir is not None:
        from lmforge.data.shards import read_split

        train = _split_texts(read_split(data_dir, "train"))
        val = _split_texts(read_split(data_dir, "val"))
    else:
        raise DataError("the tokenizer stage needs text: add a data section or set tokenizer.files")
    if cfg.max_docs:
        train = train[: cfg.max_docs]
    if not train:
        raise DataError(
            "the tokenizer's training corpus is empty (no non-empty text in the train split)"
        )
    if not val:
        logger.warning(
            "no validation text for the tokenizer metrics; measuring on the training text"
        )
        val = train
    return train, val


def build_tokenizer(
    cfg: TokenizerConfig, data_dir: Path | None, out_dir: Path, metrics: MetricsLogger
) -> StageResult:
    """Train on the data stage's text (or ``cfg.files``), measure on val, save in ``out_dir``."""
    train, val = training_texts(cfg, data_dir)
    t0 = time.perf_counter()
    tok = train_tokenizer(cfg, train)
    seconds = time.perf_counter() - t0
    if tok.get_vocab_size() > cfg.vocab_size:
        logger.warning(
            "the %s vocabulary has %d entries, above vocab_size=%d: every character seen in training is "
            "kept so no text maps to the unknown token",
            cfg.kind,
            tok.get_vocab_size(),
            cfg.vocab_size,
        )
    save_tokenizer(to_transformers(tok, cfg), out_dir)
    result = {
        **measure(tok, val, cfg.resolved_specials().get("unk")),
        "train_documents": len(train),
        "train_seconds": round(seconds, 3),
    }
    metrics.log_dict("tokenizer", result)
    return StageResult(metrics=result, artifacts={"tokenizer": "."})


def run_tokenizer_stage(ctx: StageContext, out: Path) -> StageResult:
    return build_tokenizer(ctx.recipe.tokenizer, ctx.stage_dir("data"), out, ctx.metrics)


def _inputs(recipe: Any) -> Any:
    return [fingerprint_path(p) for p in recipe.tokenizer.files or []]


SPEC = StageSpec(
    name="tokenizer",
    config=TokenizerConfig,
    description="Train a subword tokenizer.",
    run=run_tokenizer_stage,
    inputs=_inputs,
    needs=("data",),
)
