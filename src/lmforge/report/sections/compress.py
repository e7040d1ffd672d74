"""The compress stage: every artefact side by side (quality, size, latency; the Pareto front),
the trade-off plot, and what each step did — all read from ``compress/pareto.json``.

Keys read (each optional, so a stage that records less still draws): ``test_examples``,
``artefacts[]`` with ``name``, ``format``, ``quality``, ``quality_metric``, ``quality_delta``,
``params``, ``size_mb``, ``size_ratio``, ``latency_ms_p50_b<N>``, ``speedup_b<N>``,
``peak_rss_mb``, ``pareto``, ``path``, ``step`` (``method`` + facts); ``unscored[]`` (GGUF
exports: ``params``, ``size_mb``); ``chosen`` (a name) with ``chosen_because``. Without
pareto.json the summary's per-artefact numbers are shown.
"""

from __future__ import annotations

import re
from typing import Any

from lmforge.report.blocks import Block, KeyValues, Row, Table, Text, fmt, label
from lmforge.report.plots import image
from lmforge.report.run import StageView
from lmforge.report.sections import register

PLOT_CAPTION = "Quality against {speed}; marker area is the size on disk"


@register("compress", "Compression")
def render(view: StageView) -> list[Block]:
    pareto = view.read_json("pareto.json")
    if not isinstance(pareto, dict):
        return _from_summary(view.metrics)
    points = [p for p in pareto.get("artefacts") or [] if isinstance(p, dict) and "name" in p]
    unscored = [p for p in pareto.get("unscored") or [] if isinstance(p, dict) and "name" in p]
    chosen = pareto.get("chosen") or pareto.get("selected")
    blocks: list[Block] = []
    if points:
        blocks.append(_pareto_table(points, chosen, pareto.get("test_examples")))
    front = [str(p["name"]) for p in points if p.get("pareto")]
    if front:
        speed = "batch-1 latency and " if _batch_sizes(points) else ""
        blocks.append(
            Text(
                f"Pareto front (no other artefact is at least as good on quality, {speed}size, "
                f"and better on one): {', '.join(front)}."
            )
        )
    if isinstance(chosen, str) and chosen:
        why = pareto.get("chosen_because") or pareto.get("selected_because")
        blocks.append(Text(f"Chosen: {chosen}" + (f" ({why})." if why else ".")))
    plot = view.path("tradeoff.png")
    # the stage plots batch-1 latency when every artefact was profiled, else predict time
    profiled = bool(points) and all("latency_ms_p50_b1" in p for p in points)
    speed = "latency at batch 1" if profiled else "the time to predict the test examples"
    figure = image(plot, PLOT_CAPTION.format(speed=speed)) if plot else None
    side: list[Block] = [_steps_table(points + unscored)]
    if figure is not None:
        blocks.append(Row([figure, *side]))
    else:
        blocks += side
    if unscored:
        rows = [
            [str(p["name"]), str(p.get("format", "")), fmt(p.get("params")), _mb(p.get("size_mb"))]
            for p in unscored
        ]
        blocks.append(
            Table(
                ["artefact", "format", "parameters", "size (MB)"],
                rows,
                "Exports not scored here (no task to score; the step checked its logits)",
            )
        )
    if points:
        blocks.append(
            Text(
                "Serve one with `lmforge serve RUN_DIR/compress/<artefact>`; `lmforge serve "
                "RUN_DIR` serves the fine-tuned model.",
                "note",
            )
        )
    return blocks


def _batch_sizes(points: list[dict[str, Any]]) -> list[int]:
    sizes = {
        int(m.group(1))
        for p in points
        for k in p
        if (m := re.fullmatch(r"latency_ms_p50_b(\d+)", k)) is not None
    }
    return sorted(sizes)


def _pareto_table(points: list[dict[str, Any]], chosen: Any, examples: Any) -> Table:
    metric = next((str(p["quality_metric"]) for p in points if p.get("quality_metric")), "quality")
    sizes = _batch_sizes(points)
    columns = ["artefact", "format", metric, "Δ vs source", "parameters", "size (MB)", "size ×"]
    columns += [f"p50 latency b{b} (ms)" for b in sizes]
    columns += [f"speed-up b{b}" for b in sizes]
    columns += ["predict (s)", "peak RSS (MB)", "Pareto"]
    rows = []
    for p in points:
        mark = "✓" if p.get("pareto") else ""
        if chosen == p["name"]:
            mark = (mark + " chosen").strip()
        delta = p.get("quality_delta")
        rows.append(
            [
                str(p["name"]),
                str(p.get("format", "")),
                fmt(p.get("quality")),
                (f"{delta:+.4g}" if delta else "0") if isinstance(delta, int | float) else "",
                fmt(p.get("params")),
                _mb(p.get("size_mb")),
                _times(p.get("size_ratio")),
                *(_ms(p.get(f"latency_ms_p50_b{b}")) for b in sizes),
                *(_times(p.get(f"speedup_b{b}")) for b in sizes),
                _ms(p.get("predict_seconds")),
                _mb(p.get("peak_rss_mb")),
                mark,
            ]
        )
    # a column no artefact has a value for (no profiling: no latency, no RSS) is left out
    keep = [i for i in range(len(columns)) if i < 3 or any(r[i] for r in rows)]
    note = "Every artefact scored on the same test examples"
    note += f" ({fmt(examples)})" if isinstance(examples, int) else ""
    if sizes:
        note += " and timed on the same inputs, each loaded in a fresh process"
    note += "; the source comes first. predict (s): time to predict the test examples."
    return Table(
        [columns[i] for i in keep],
        [[r[i] for i in keep] for r in rows],
        "Artefacts side by side",
        note,
    )


def _steps_table(points: list[dict[str, Any]]) -> Block:
    rows = []
    for p in points:
        step = p.get("step")
        if not isinstance(step, dict):
            continue
        facts = [
            f"{label(k)} {fmt(v)}"
            for k, v in step.items()
            if k not in ("method", "input") and isinstance(v, int | float | str | bool)
        ]
        rows.append(
            [
                str(p["name"]),
                str(step.get("method", "")),
                str(step.get("input", "")),
                "; ".join(facts),
            ]
        )
    return Table(["artefact", "method", "made from", "what the step did"], rows, "Steps")


def _from_summary(metrics: dict[str, Any]) -> list[Block]:
    """No pareto.json (a stage that failed before writing it): the summary's numbers."""
    rows = [
        [name, *(fmt(m.get(k)) for k in ("quality", "params", "size_mb", "latency_ms_p50_b1"))]
        for name, m in metrics.items()
        if isinstance(m, dict)
    ]
    blocks: list[Block] = [Text("No compress/pareto.json: only the summary's numbers.", "note")]
    if rows:
        columns = ["artefact", "quality", "parameters", "size (MB)", "p50 latency b1 (ms)"]
        blocks.append(Table(columns, rows, "Artefacts"))
    front = metrics.get("pareto")
    if isinstance(front, list) and front:
        blocks.append(KeyValues([("Pareto front", ", ".join(map(str, front)))]))
    return blocks


def _mb(value: Any) -> str:
    return f"{value:,.1f}" if isinstance(value, int | float) else ""


def _ms(value: Any) -> str:
    return f"{value:,.2f}" if isinstance(value, int | float) else ""


def _times(value: Any) -> str:
    return f"{value:.2f}×" if isinstance(value, int | float) else ""
