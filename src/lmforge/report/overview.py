"""The report's first section: what ran, how it ended, how long each stage took, and the
recipe it ran from."""

from __future__ import annotations

from lmforge.report.blocks import Block, Code, Details, KeyValues, Section, Table, Text, fmt, label
from lmforge.report.run import COMPLETE, STOPPED, RunView

HEADLINE_COUNT = 3


def overview_section(run: RunView) -> Section:
    stages = [run.stage(name) for name in run.stage_names]
    failed = [s.name for s in stages if s.status in STOPPED]
    stale = [s.name for s in stages if s.status == "stale"]
    total = sum(s.seconds or 0.0 for s in stages if not s.entry.get("cached"))
    if failed:
        how = " or ".join(sorted({s.status for s in stages if s.name in failed}))
        outcome = f"{how} in stage {', '.join(failed)}"
    elif stages and all(s.status in COMPLETE for s in stages):
        outcome = "complete" + (f" ({', '.join(stale)} stale)" if stale else "")
    else:
        outcome = "incomplete (interrupted, or still running)"
    versions = run.recipe.get("versions") if isinstance(run.recipe.get("versions"), dict) else {}
    facts = [
        ("run", run.name),
        ("directory", str(run.root.resolve())),
        ("outcome", outcome),
        ("time in stages", f"{total:,.1f} s"),
        ("seed", fmt(run.recipe.get("seed"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
    ]
    blocks: list[Block] = []
    if run.description:
        blocks.append(Text(run.description))
    blocks.append(KeyValues([(k, v) for k, v in facts if v], "Run"))
    rows = []
    for s in stages:
        shown = [
            f"{label(k)} {fmt(v)}"
            for k, v in s.metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ][:HEADLINE_COUNT]
        seconds = f"{s.seconds:,.1f}" if s.seconds is not None else ""
        status = s.status + (" (reused)" if s.entry.get("cached") else "")
        rows.append([s.name, status, seconds, "; ".join(shown)])
    if rows:
        blocks.append(Table(["stage", "status", "seconds", "first numbers"], rows, "Stages"))
    else:
        blocks.append(Text("No stage has finished yet.", "note"))
    for problem in run.problems:
        blocks.append(Text(problem, "warning"))
    recipe_file = run.root / "recipe.yaml"
    if recipe_file.is_file():
        text = recipe_file.read_text(encoding="utf-8", errors="replace")
        blocks.append(Details("Resolved recipe (recipe.yaml)", [Code(text)]))
    return Section("overview", "Overview", blocks, "", outcome)
