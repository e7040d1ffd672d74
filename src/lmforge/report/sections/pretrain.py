"""The pretrain stage: train/val loss, learning rate and throughput per step (from
``pretrain/history.jsonl``, else the run's ``metrics.jsonl``), MFU and the final numbers."""

from __future__ import annotations

import math
from typing import Any

from lmforge.report.blocks import Block, KeyValues, Row, Text, fmt
from lmforge.report.plots import Series, line_chart
from lmforge.report.run import StageView
from lmforge.report.sections import register, scalar_metrics

HEADLINE = (
    "steps",
    "tokens",
    "params",
    "final_train_loss",
    "val_loss",
    "val_perplexity",
    "unigram_val_loss",
    "train_seconds",
)
SPEED = ("tokens_per_second", "flops_per_token", "peak_flops", "mfu", "processes")


@register("pretrain", "Pretraining")
def render(view: StageView) -> list[Block]:
    m = view.metrics
    blocks: list[Block] = []
    if m:
        blocks.append(
            Row(
                [
                    KeyValues(
                        [(k.replace("_", " "), fmt(m[k])) for k in HEADLINE if k in m], "Result"
                    ),
                    KeyValues(_speed_rows(m), "Throughput and MFU"),
                ]
            )
        )
    history = pretrain_history(view)
    if not history:
        blocks.append(Text("No per-step history was recorded.", "note"))
        return blocks + _rest(m)

    def series(key: str, name: str, style: str = "-") -> Series:
        points = [(r["step"], r[key]) for r in history if _finite(r.get(key))]
        return Series(name, [p[0] for p in points], [p[1] for p in points], style)

    charts = [
        line_chart(
            [series("loss", "train"), series("val_loss", "validation", "o-")],
            "Loss per step (nats/token)",
            "step",
            "loss",
        ),
        line_chart([series("lr", "")], "Learning rate", "step", "learning rate"),
        line_chart([series("tokens_per_second", "")], "Throughput", "step", "tokens/s"),
        line_chart([series("grad_norm", "")], "Gradient norm (before clipping)", "step", "norm"),
    ]
    view.used.add("loss.png")  # the same curves, drawn above from the history
    blocks.append(Row([c for c in charts if c is not None]))
    return blocks + _rest(m)


def _speed_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(k.replace("_", " "), fmt(m[k])) for k in SPEED if k in m and k != "mfu"]
    if _finite(m.get("mfu")):
        rows.append(("MFU", f"{100 * m['mfu']:.2f}% of the measured matmul peak"))
    if _finite(m.get("flops_per_token")) and _finite(m.get("tokens")):
        rows.append(("training FLOPs", fmt(float(m["flops_per_token"] * m["tokens"]))))
    return rows


def _rest(m: dict[str, Any]) -> list[Block]:
    rows = scalar_metrics(m, set(HEADLINE) | set(SPEED))
    return [KeyValues(rows, "Other numbers")] if rows else []


def pretrain_history(view: StageView) -> list[dict[str, Any]]:
    """One record per logged step: history.jsonl, else the run's metrics.jsonl events."""
    rows = [r for r in view.read_jsonl("history.jsonl") if isinstance(r.get("step"), int)]
    if rows:
        return rows
    by_step: dict[int, dict[str, Any]] = {}
    for e in view.events():
        if isinstance(e.get("step"), int):
            by_step.setdefault(e["step"], {"step": e["step"]})[e.get("name")] = e.get("value")
    return [by_step[s] for s in sorted(by_step)]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
