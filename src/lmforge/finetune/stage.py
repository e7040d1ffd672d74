"""Entry point of the finetune stage: labelled data -> model + method -> train -> test -> save.

Outputs (in the stage directory):
    model/             the fine-tuned model: a peft adapter (PEFT methods; loads with
                       ``PeftModel.from_pretrained``) or a full model, plus the tokenizer
    merged/            with ``merge: true``: adapter merged into a plain transformers model
    predictions.jsonl  test-split predictions next to their references
    confusion.png      confusion matrix on the test split (classification)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.core.errors import DataError, LmforgeError
from lmforge.core.log import logger
from lmforge.core.rundir import StageResult
from lmforge.data.document import Document
from lmforge.finetune.config import FinetuneConfig

if TYPE_CHECKING:
    from lmforge.stages import StageContext


def load_labelled(cfg: FinetuneConfig, ctx: StageContext) -> dict[str, list[Document]]:
    """train/val/test documents: from files when given, else the data stage's splits."""
    from lmforge.data.config import SourceConfig
    from lmforge.data.shards import read_split
    from lmforge.data.sources import LoadStats, load_source

    out: dict[str, list[Document]] = {}
    data_dir = ctx.stage_dir("data")
    for split in ("train", "val", "test"):
        path = getattr(cfg.data, split)
        if path is not None:
            src = SourceConfig(
                path=path, text_column=cfg.data.text_column, label_column=cfg.data.label_column
            )
            out[split] = load_source(src, LoadStats())
        elif data_dir is not None:
            out[split] = read_split(data_dir, split)
        else:
            out[split] = []
    if cfg.data.limit:
        out["train"] = out["train"][: cfg.data.limit]
    if not out["test"]:
        logger.warning("finetune: no test split; reporting metrics on the val split")
        out["test"] = out["val"]
    if not out["test"]:
        raise DataError(
            "finetune needs val or test data to report metrics (data.split or finetune.data)"
        )
    return out


def model_dir(cfg: FinetuneConfig, ctx: StageContext) -> Path:
    from lmforge.models import resolve_model_path

    assert cfg.model.path is not None
    if cfg.model.path == "pretrain":
        pretrained = ctx.root / "pretrain" / "model"
        if not (pretrained / "config.json").exists():
            raise LmforgeError(
                "finetune.model.path is 'pretrain' but the pretrain stage has no model yet"
            )
        return pretrained
    return resolve_model_path(cfg.model.path)


def run_finetune_stage(ctx: StageContext, out: Path) -> StageResult:
    import torch
    from transformers import AutoTokenizer

    import lmforge.finetune.tasks.classification  # noqa: F401 - registers the task
    from lmforge.evaluate.metrics import plot_confusion_matrix
    from lmforge.finetune.methods import METHODS, apply_method, trainable_parameters
    from lmforge.finetune.tasks import TASKS
    from lmforge.finetune.tasks.classification import LabelInfo
    from lmforge.finetune.train import fit

    cfg = ctx.recipe.finetune
    assert cfg is not None
    task = TASKS.get(cfg.task)

    # ---------------------------------------------------------------- set-up
    splits = load_labelled(cfg, ctx)
    info = LabelInfo.from_documents(splits["train"])
    path = model_dir(cfg, ctx)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:  # decoders: pad with EOS, as GPT-2 classifiers do
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id
    encoded = {
        s: task.encode(tokenizer, docs, info, cfg.max_length, s)
        for s, docs in splits.items()
        if docs
    }
    torch.manual_seed(ctx.recipe.seed)
    model = task.load_model(str(path), info)
    model.config.pad_token_id = pad_id
    steps = cfg.epochs * -(-len(encoded["train"]) // cfg.batch_size)
    model = apply_method(cfg.method, model, cfg.method_config, task.peft_task, steps)
    trainable, total = trainable_parameters(model)
    logger.info(
        "finetune: %s on %d examples (%d labels), %s trainable of %s params",
        cfg.method,
        len(encoded["train"]),
        len(info.labels),
        f"{trainable:,}",
        f"{total:,}",
    )

    # ---------------------------------------------------------------- train
    t0 = time.perf_counter()
    history = fit(
        model,
        encoded["train"],
        encoded.get("val"),
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        pad_id=pad_id,
        seed=ctx.recipe.seed,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
    )
    train_seconds = time.perf_counter() - t0
    for record in history:
        ctx.metrics.log_dict(
            "finetune", {k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"]
        )

    # ---------------------------------------------------------------- test and save
    test = encoded["test"]
    predictions = task.predict(model, test, info, pad_id)
    scores = task.metrics(test.references, predictions, info)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    artifacts = {"model": "model", "predictions": "predictions.jsonl"}
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as f:
        for doc, pred in zip(splits["test"], predictions, strict=True):
            f.write(
                json.dumps(
                    {"text": doc.text[:300], "label": doc.label, "prediction": pred},
                    ensure_ascii=False,
                )
                + "\n"
            )
    if "confusion_matrix" in scores:
        plot_confusion_matrix(
            scores["confusion_matrix"],
            info.labels,
            out / "confusion.png",
            f"{ctx.recipe.name}: test",
        )
        artifacts["confusion_matrix"] = "confusion.png"
    metrics: dict[str, Any] = {
        **{k: v for k, v in scores.items() if isinstance(v, int | float)},
        "per_class": scores.get("per_class"),
        "labels": info.labels,
        "train_examples": len(encoded["train"]),
        "test_examples": len(test),
        "truncated_train": encoded["train"].truncated,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_fraction": trainable / total,
        "train_seconds": train_seconds,
        "history": history,
    }
    if cfg.task == "classification" and not info.multi_label:
        metrics["baseline"] = _baseline(splits, info, task)
        metrics["accuracy_vs_baseline"] = scores["accuracy"] / max(
            metrics["baseline"]["accuracy"], 1e-9
        )
    if cfg.merge and METHODS.get(cfg.method).uses_peft:
        metrics["merge_max_abs_diff"] = _merge(model, test, pad_id, out / "merged", tokenizer)
        artifacts["merged"] = "merged"
    ctx.metrics.log_dict(
        "finetune", {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    )
    return StageResult(metrics=metrics, artifacts=artifacts)


def _baseline(splits: dict[str, list[Document]], info: Any, task: Any) -> dict[str, Any]:
    """TF-IDF + logistic regression on the same train/test split."""
    from lmforge.finetune.baselines import tfidf_logreg

    train, test = splits["train"], splits["test"]
    preds = tfidf_logreg([d.text for d in train], [d.label for d in train], [d.text for d in test])
    scores = task.metrics([d.label for d in test], preds, info)
    return {
        "method": "tfidf+logreg",
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
    }


def _merge(model: Any, test: Any, pad_id: int, dest: Path, tokenizer: Any) -> float:
    """Merge the adapter into the base weights, save, and return the max output difference."""
    import torch

    batch = test.batch(list(range(min(16, len(test)))), pad_id)
    batch.pop("labels")
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
        try:
            merged = model.merge_and_unload()
        except (AttributeError, ValueError) as e:
            raise LmforgeError(f"finetune.merge: this method cannot be merged ({e})") from None
        diff = (merged(**batch).logits - before).abs().max().item()
    merged.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return diff
