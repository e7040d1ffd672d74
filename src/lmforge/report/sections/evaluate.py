"""The evaluate stage: scores of the saved model on the test file, and what serving it costs
(size on disk, forward latency at each batch size, peak memory)."""

from __future__ import annotations

from lmforge.report.blocks import Block, KeyValues, Row, Table, fmt, label
from lmforge.report.run import StageView
from lmforge.report.sections import nested_tables, register, scalar_metrics

SERVING_PREFIXES = ("latency_", "size_mb", "base_size_mb", "peak_rss", "predict_seconds")
COUNTS = ("test_examples", "truncated_test", "total_params", "trainable_params", "model")


@register("evaluate", "Evaluation")
def render(view: StageView) -> list[Block]:
    m = view.metrics
    serving = [(label(k), fmt(v)) for k, v in m.items() if k.startswith(SERVING_PREFIXES)]
    skip = {k for k in m if k.startswith(SERVING_PREFIXES)} | set(COUNTS)
    scores = scalar_metrics(m, skip)
    blocks: list[Block] = [
        Row(
            [
                KeyValues(scores, "Scores on the test file"),
                KeyValues(serving, "Size and speed (serving numbers)"),
                KeyValues([(label(k), fmt(m[k])) for k in COUNTS if k in m], "Model and data"),
            ]
        )
    ]
    latency = sorted(
        (int(k.removeprefix("latency_ms_b")), v)
        for k, v in m.items()
        if k.startswith("latency_ms_b") and k.removeprefix("latency_ms_b").isdigit()
    )
    if latency:
        rows = [[str(b), f"{ms:.2f}", f"{1000 * b / ms:,.1f}" if ms else ""] for b, ms in latency]
        blocks.append(Table(["batch", "latency (ms)", "examples/s"], rows, "Forward latency"))
    blocks += nested_tables({k: m[k] for k in ("per_class", "per_type") if k in m})
    return blocks
