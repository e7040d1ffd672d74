"""The finetune stage: test scores beside the task's baseline, the confusion matrix or per-type
scores, the PEFT method's trainable share of the model, and the loss per epoch."""

from __future__ import annotations

import math
from typing import Any

from lmforge.report.blocks import Block, Details, KeyValues, Row, Table, Text, fmt, label
from lmforge.report.plots import Series, image, line_chart
from lmforge.report.run import StageView
from lmforge.report.sections import nested_tables, register, scalar_metrics

FIGURES = {
    "confusion.png": "Confusion matrix on the test split (rows: true label, columns: predicted)",
    "entity_f1.png": "F1 per entity type on the test split",
    "fewshot.png": "Score against the number of labelled examples per class",
}
TRAINING = ("train_examples", "test_examples", "truncated_train", "train_seconds")
PEFT = ("trainable_params", "total_params", "trainable_fraction", "merge_max_abs_diff")
STRUCTURED = ("per_class", "per_type", "history", "labels", "baseline")


@register("finetune", "Fine-tuning")
def render(view: StageView) -> list[Block]:
    m, cfg = view.metrics, view.config
    scores = _scores(m)
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    start = model.get("path") or model.get("preset") or "the run's pretrained model"
    peft_rows = [
        ("task", str(cfg.get("task", ""))),
        ("method", str(cfg.get("method", ""))),
        ("starting model", str(start)),
    ]
    if isinstance(m.get("trainable_params"), int) and isinstance(m.get("total_params"), int):
        share = m["trainable_params"] / max(m["total_params"], 1)
        peft_rows.append(
            (
                "trainable parameters",
                f"{m['trainable_params']:,} of {m['total_params']:,} ({100 * share:.3g}%)",
            )
        )
    if "merge_max_abs_diff" in m:
        peft_rows.append(("merged vs adapter, max |Δ output|", fmt(m["merge_max_abs_diff"])))
    peft_rows += [(label(k), fmt(m[k])) for k in TRAINING if k in m]
    blocks: list[Block] = [Row([scores, KeyValues(peft_rows, "Method (PEFT) and training")])]

    figures: list[Block] = []
    for name, caption in FIGURES.items():
        path = view.path(name)
        fig = image(path, caption) if path else None
        if fig is not None:
            figures.append(fig)
    history = m.get("history") if isinstance(m.get("history"), list) else []
    chart = _history_chart([h for h in history if isinstance(h, dict)])
    if chart is not None:
        figures.append(chart)
    figures += nested_tables({k: m[k] for k in ("per_class", "per_type") if k in m})
    if figures:
        blocks.append(Row(figures))
    shown = {"history", "labels", "baseline", "per_class", "per_type", *TRAINING, *PEFT}
    rest = scalar_metrics(m, shown)
    if rest:
        blocks.append(Details("All metrics", [KeyValues(rest)]))
    return blocks


def _scores(m: dict[str, Any]) -> Block:
    """Each test score with the baseline's beside it (a simple model on the same split)."""
    base = m.get("baseline") if isinstance(m.get("baseline"), dict) else {}
    keys = [
        k
        for k, v in m.items()
        if isinstance(v, float)
        and k not in (*TRAINING, *PEFT)
        and not k.endswith("_vs_baseline")
        and not k.startswith("train")
    ]
    if not keys:
        return Text("No test scores were recorded.", "note")
    if not base:
        return KeyValues([(label(k), fmt(m[k])) for k in keys], "Test scores")
    method = str(base.get("method", "baseline"))
    rows = []
    for k in keys:
        b = base.get(k)
        ratio = m[k] / b if isinstance(b, int | float) and b and math.isfinite(m[k]) else None
        rows.append(
            [label(k), fmt(m[k]), fmt(b) if b is not None else "", f"{ratio:.2f}×" if ratio else ""]
        )
    return Table(
        ["metric", "fine-tuned model", f"baseline: {method}", "ratio"], rows, "Test scores"
    )


def _history_chart(history: list[dict[str, Any]]) -> Any:
    def series(key: str, name: str) -> Series:
        pts = [
            (h.get("epoch", i + 1), h[key])
            for i, h in enumerate(history)
            if isinstance(h.get(key), int | float)
        ]
        return Series(name, [p[0] for p in pts], [p[1] for p in pts], "o-")

    if len(history) < 2:  # one epoch is one point: the table says it better
        return None
    return line_chart(
        [series("train_loss", "train"), series("val_loss", "validation")],
        "Loss per epoch",
        "epoch",
        "loss",
    )
