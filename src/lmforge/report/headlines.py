"""The three numbers a run ends on: what it scored, what the model costs to run, how it trained.

``lmforge run`` prints them under the report's path; each is the first one the run has of its
kind (a recipe without a fine-tune still has a pretraining loss or a corpus size).
"""

from __future__ import annotations

from typing import Any

# (label, stage, metric key, format), in order of preference within each kind. Two tasks
# report "f1" on different scales: NER (seqeval, 0-1, with a token accuracy beside it) and
# extractive QA (SQuAD, 0-100, with an exact match beside it); the key after "|" must be there.
QUALITY = (
    ("test accuracy", "evaluate", "accuracy", "{:.1%}"),
    ("test accuracy", "finetune", "accuracy", "{:.1%}"),
    ("entity F1", "finetune", "f1|token_accuracy", "{:.3f}"),
    ("F1", "finetune", "f1|exact_match", "{:.1f}"),
    ("BLEU", "finetune", "bleu", "{:.1f}"),
)
COST = (
    ("latency at batch 1", "evaluate", "latency_ms_b1", "{:.1f} ms"),
    ("model size", "evaluate", "size_mb", "{:.1f} MB"),
    ("trainable share", "finetune", "trainable_fraction", "{:.2%}"),
)
TRAINING = (
    ("pretraining val loss", "pretrain", "val_loss", "{:.3f}"),
    ("tokenizer chars/token", "tokenizer", "chars_per_token", "{:.2f}"),
    ("documents kept", "data", "documents_out", "{:,}"),
)


def headline_numbers(summary: dict[str, Any]) -> list[str]:
    """Up to three ``"label value"`` strings: one per kind the run has a number for."""
    stages = summary.get("stages", {})
    out = []
    for kind in (QUALITY, COST, TRAINING):
        for label, stage, key, fmt in kind:
            entry = stages.get(stage) or {}
            metrics = entry.get("metrics") or {}
            key, _, beside = key.partition("|")
            value = metrics.get(key)
            if beside and beside not in metrics:
                continue
            if entry.get("status") == "done" and isinstance(value, int | float):
                out.append(f"{label} {fmt.format(value)}")
                break
    return out
