"""The data stage: the funnel of documents and characters through each filter, PII, duplicates,
splits, and examples of what was removed (all from ``data/stats.json``)."""

from __future__ import annotations

from typing import Any

from lmforge.report.blocks import Block, Details, Examples, KeyValues, Row, Table, Text, fmt, label
from lmforge.report.plots import funnel_chart
from lmforge.report.run import StageView
from lmforge.report.sections import nested_tables, register, scalar_metrics


@register("data", "Data")
def render(view: StageView) -> list[Block]:
    stats = view.read_json("stats.json")
    if not isinstance(stats, dict) or not isinstance(stats.get("steps"), list):
        rows = scalar_metrics(view.metrics)
        note = Text("No data/stats.json: only the summary's numbers are shown.", "note")
        return [note, KeyValues(rows, "Metrics")] if rows else [note]
    steps = [s for s in stats["steps"] if isinstance(s, dict)]
    m = view.metrics
    blocks: list[Block] = [
        KeyValues(
            [
                (
                    "documents",
                    f"{fmt(stats.get('documents_in'))} → {fmt(stats.get('documents_out'))}",
                ),
                (
                    "characters",
                    f"{fmt(stats.get('characters_in'))} → {fmt(stats.get('characters_out'))}",
                ),
                ("PII replaced", fmt(m.get("pii_replaced", 0))),
                (
                    "duplicates removed",
                    f"{fmt(m.get('removed_exact_dedup', 0))} exact, "
                    f"{fmt(m.get('removed_near_dedup', 0))} near",
                ),
            ],
            "Corpus",
        )
    ]
    funnel = [s for s in steps if s.get("step") != "load"]
    loaded_docs = int(stats.get("documents_in") or 0)
    loaded_chars = int(stats.get("characters_in") or 0)
    chart = funnel_chart(
        ["loaded", *(str(s.get("step")) for s in funnel)],
        [loaded_docs, *(int(s.get("docs_out") or 0) for s in funnel)],
        [loaded_chars, *(int(s.get("chars_out") or 0) for s in funnel)],
        "Documents and characters kept after each step",
    )
    blocks.append(Row([chart, _steps_table(funnel)]))
    tables: list[Block] = _pii(steps) + _reasons(steps)
    if isinstance(stats.get("splits"), dict):
        tables += nested_tables({"splits": stats["splits"]})
    if isinstance(stats.get("sources"), list):
        sources = [_short(s) for s in stats["sources"] if isinstance(s, dict)]
        tables += nested_tables({"sources": sources})
    blocks.append(Row(tables))
    blocks += _examples(steps)
    for warning in stats.get("warnings") or []:
        blocks.append(Text(str(warning), "warning"))
    return blocks


def _short(source: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if not isinstance(v, list | dict)}


def _steps_table(steps: list[dict[str, Any]]) -> Table:
    rows = []
    for s in steps:
        d_in, d_out = int(s.get("docs_in") or 0), int(s.get("docs_out") or 0)
        c_in, c_out = int(s.get("chars_in") or 0), int(s.get("chars_out") or 0)
        removed = f"{100 * (c_in - c_out) / c_in:.2f}%" if c_in else ""
        rows.append(
            [
                str(s.get("step")),
                fmt(d_in),
                fmt(d_out),
                fmt(d_in - d_out),
                fmt(c_in),
                fmt(c_out),
                removed,
            ]
        )
    columns = [
        "step",
        "docs in",
        "docs out",
        "docs removed",
        "chars in",
        "chars out",
        "chars removed",
    ]
    return Table(columns, rows, "Each step")


def _pii(steps: list[dict[str, Any]]) -> list[Block]:
    pii = next((s for s in steps if s.get("step") == "pii"), None)
    detail = pii.get("detail") if pii else None
    if not isinstance(detail, dict) or not detail:
        return []
    rows = [[label(k), fmt(v)] for k, v in detail.items()]
    return [Table(["PII type", "replaced"], rows, "Personal data replaced by placeholders")]


def _reasons(steps: list[dict[str, Any]]) -> list[Block]:
    rows = []
    for s in steps:
        detail = s.get("detail") if isinstance(s.get("detail"), dict) else {}
        for rule, count in (detail.get("removed_by_rule") or {}).items():
            rows.append([str(s.get("step")), str(rule), fmt(count)])
        if "clusters" in detail:
            rows.append(
                [
                    str(s.get("step")),
                    f"near-duplicate clusters (threshold {fmt(detail.get('threshold'))})",
                    fmt(detail["clusters"]),
                ]
            )
    return (
        [Table(["step", "rule", "documents"], rows, "Why documents were removed")] if rows else []
    )


def _examples(steps: list[dict[str, Any]]) -> list[Block]:
    blocks: list[Block] = []
    for s in steps:
        items: list[tuple[str, str]] = []
        for ex in s.get("removed_examples") or []:
            if not isinstance(ex, dict):
                continue
            if "removed" in ex:  # a near-duplicate pair
                items.append(("kept", str(ex.get("kept", ""))))
                items.append((f"removed ({ex.get('reason', 'duplicate')})", str(ex["removed"])))
            else:
                where = " · ".join(str(ex[k]) for k in ("source", "id", "title") if ex.get(k))
                items.append((f"{ex.get('reason', '')} {where}".strip(), str(ex.get("text", ""))))
        if items:
            blocks.append(Examples(f"removed by {s.get('step')}", items))
    return [Details("Examples of what was removed", blocks)] if blocks else []
