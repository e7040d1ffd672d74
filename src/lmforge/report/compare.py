"""``lmforge compare RUN_A RUN_B …``: runs side by side on one self-contained page.

What differs in their recipes, every number their summaries record (one column per run), and
their curves overlaid: pretraining loss, learning rate and throughput, fine-tuning loss per
epoch. Comparing runs that differ only in the PEFT method is the PEFT comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.core.atomic import write_text_atomic
from lmforge.core.errors import LmforgeError
from lmforge.report.blocks import Block, Row, Section, Table, Text, fmt, label
from lmforge.report.build import render_page
from lmforge.report.plots import Series, line_chart
from lmforge.report.run import RunView
from lmforge.report.sections.pretrain import pretrain_history

CURVES = (  # (history key, caption, y label)
    ("loss", "Pretraining loss (train)", "loss"),
    ("val_loss", "Pretraining loss (validation)", "loss"),
    ("lr", "Learning rate", "learning rate"),
    ("tokens_per_second", "Throughput", "tokens/s"),
)


def compare_runs(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Write the comparison page (default ``compare.html`` here) and return its path.

    Raises:
        LmforgeError: fewer than two directories, or one that is not a run directory.
    """
    if len(run_dirs) < 2:
        raise LmforgeError("lmforge compare needs at least two run directories")
    runs = [RunView.load(Path(d)) for d in run_dirs]
    names = _labels(runs)
    sections = [
        Section("runs", "Runs", [_runs_table(runs, names), *_config_diff(runs, names)]),
        Section("metrics", "Metrics", _metrics_tables(runs, names)),
        Section("curves", "Curves", _curves(runs, names)),
    ]
    out = Path(out) if out is not None else Path("compare.html")
    if out.is_dir():
        out = out / "compare.html"
    write_text_atomic(out, render_page("compare.html.j2", runs=names, sections=sections))
    return out


def _labels(runs: list[RunView]) -> list[str]:
    """The directory names, or the full paths where two directories share a name."""
    names = [r.root.name for r in runs]
    return [str(r.root) if names.count(n) > 1 else n for r, n in zip(runs, names, strict=True)]


def _runs_table(runs: list[RunView], names: list[str]) -> Block:
    rows = []
    for run, name in zip(runs, names, strict=True):
        stages = [run.stage(s) for s in run.stage_names]
        seconds = sum(s.seconds or 0.0 for s in stages if not s.entry.get("cached"))
        status = ", ".join(f"{s.name} {s.status}" for s in stages)
        rows.append([name, run.name, status, f"{seconds:,.1f}", str(run.root.resolve())])
    return Table(["run", "recipe", "stages", "seconds", "directory"], rows)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _config_diff(runs: list[RunView], names: list[str]) -> list[Block]:
    flat = [_flatten(r.recipe) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    rows = [
        [k, *(fmt(f[k]) if k in f else "—" for f in flat)]
        for k in keys
        if len({repr(f.get(k, "—")) for f in flat}) > 1
    ]
    if not rows:
        return [Text("The recipes are identical.", "note")]
    return [Table(["recipe key", *names], rows, "What differs between the recipes")]


def _metrics_tables(runs: list[RunView], names: list[str]) -> list[Block]:
    stages = list(dict.fromkeys(s for r in runs for s in r.stage_names))
    blocks: list[Block] = []
    for stage in stages:
        per_run = [r.stage(stage).metrics for r in runs]
        keys = list(
            dict.fromkeys(
                k
                for m in per_run
                for k, v in m.items()
                if isinstance(v, int | float | str) and not isinstance(v, bool)
            )
        )
        rows = [[label(k), *(fmt(m[k]) if k in m else "—" for m in per_run)] for k in keys]
        status = [r.stage(stage).status for r in runs]
        if rows:
            blocks.append(Table(["metric", *names], rows, stage))
        else:
            blocks.append(Text(f"{stage}: no numbers ({', '.join(status)})", "note"))
    return blocks or [Text("No stage recorded any metric.", "note")]


def _curves(runs: list[RunView], names: list[str]) -> list[Block]:
    histories = [pretrain_history(r.stage("pretrain")) for r in runs]
    charts = []
    for key, caption, ylabel in CURVES:
        series = []
        for name, history in zip(names, histories, strict=True):
            points = [(h["step"], h[key]) for h in history if _number(h.get(key))]
            series.append(Series(name, [p[0] for p in points], [p[1] for p in points]))
        charts.append(line_chart(series, caption, "step", ylabel))
    for key, caption in (
        ("train_loss", "Fine-tuning loss (train)"),
        ("val_loss", "Fine-tuning loss (validation)"),
    ):
        series = []
        for name, run in zip(names, runs, strict=True):
            history = run.stage("finetune").metrics.get("history")
            rows = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
            points = [
                (h.get("epoch", i + 1), h[key]) for i, h in enumerate(rows) if _number(h.get(key))
            ]
            series.append(Series(name, [p[0] for p in points], [p[1] for p in points], "o-"))
        charts.append(line_chart(series, caption, "epoch", "loss"))
    drawn = [c for c in charts if c is not None]
    return [Row(drawn)] if drawn else [Text("None of these runs recorded a curve.", "note")]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
