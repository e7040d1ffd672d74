"""``lmforge improve``: the corrections it learned from and the fine-tuned model's test scores
before and after, from ``improve/result.json`` (the summary's ``improve`` entry as fallback).

Keys read (each optional): ``corrections``, ``skipped`` (reason -> count), ``train_examples``,
``test_examples``, ``main_metric``, ``before`` and ``after`` (metric -> number),
``feedback_db``.
"""

from __future__ import annotations

import math
from typing import Any

from lmforge.report.blocks import Block, KeyValues, Row, Table, Text, fmt, label
from lmforge.report.run import StageView
from lmforge.report.sections import register


@register("improve", "Improvement from feedback")
def render(view: StageView) -> list[Block]:
    result = view.read_json("result.json")
    if not isinstance(result, dict):
        result = view.metrics
    if not result:  # failed before recording anything: the failure above says it all
        return []
    before = result.get("before") if isinstance(result.get("before"), dict) else {}
    after = result.get("after") if isinstance(result.get("after"), dict) else {}
    main = str(result.get("main_metric") or "")
    skipped = result.get("skipped") if isinstance(result.get("skipped"), dict) else {}
    facts = [
        ("corrections learned from", fmt(result.get("corrections"))),
        *((f"skipped: {label(k)}", fmt(v)) for k, v in skipped.items() if isinstance(v, int) and v),
        ("training examples (train split + corrections)", fmt(result.get("train_examples"))),
        ("test examples (both models scored on them)", fmt(result.get("test_examples"))),
        ("feedback store", str(result.get("feedback_db") or "")),
    ]
    blocks: list[Block] = []
    rows = []
    for k in [*(m for m in before if m == main), *(m for m in before if m != main)]:
        b, a = before.get(k), after.get(k)
        change = ""
        if _number(b) and _number(a):
            change = f"{a - b:+.4g}" if a != b else "0"
        rows.append([label(k) + (" (main)" if k == main else ""), fmt(b), fmt(a), change])
    table = Table(
        ["metric", "before", "after", "change"],
        rows,
        "Test scores of the fine-tuned model",
        "Both models scored on the same test split; the new one replaced finetune/ (stages "
        "that read it are marked stale until rerun).",
    )
    blocks.append(Row([table, KeyValues([(k, v) for k, v in facts if v], "Corrections")]))
    if not rows:
        blocks.append(Text("No before/after scores were recorded.", "note"))
    return blocks


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
