"""Report sections, one file per stage: ``sections/<stage>.py`` registers its renderer.

A renderer takes the stage's ``StageView`` and returns blocks (``lmforge.report.blocks``).
Every module in this package is imported on first use, so a new stage adds one file here;
a stage without a file gets the generic section (its metrics and the images in its folder).
Whatever a renderer leaves out of the stage folder's images is shown under it, and a
renderer that fails on odd data falls back to the generic view with the error above it.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmforge.core.log import logger
from lmforge.core.registry import Registry
from lmforge.report.blocks import (
    Block,
    Details,
    Failure,
    KeyValues,
    Row,
    Section,
    Table,
    Text,
    fmt,
    label,
)
from lmforge.report.plots import IMAGE_TYPES, image
from lmforge.report.run import STOPPED, StageView

Renderer = Callable[[StageView], list[Block]]


@dataclass(frozen=True)
class SectionSpec:
    title: str
    render: Renderer


SECTIONS: Registry[SectionSpec] = Registry("report section")


def register(stage: str, title: str) -> Callable[[Renderer], Renderer]:
    """Decorator: ``@register("data", "Data")`` makes the function the stage's section."""

    def decorator(render: Renderer) -> Renderer:
        SECTIONS.add(stage, SectionSpec(title, render))
        return render

    return decorator


@functools.cache
def load_sections() -> Registry[SectionSpec]:
    """Import every section module of this package (once; each registers itself)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return SECTIONS


def render_stage(view: StageView) -> Section:
    """The stage's section; a failed stage says so first, then shows what it left behind."""
    registry = load_sections()
    spec = registry.get(view.name) if view.name in registry else None
    title = spec.title if spec else label(view.name).capitalize()
    blocks: list[Block] = []
    if view.status in STOPPED:
        error = view.entry.get("error") or "no message recorded"
        blocks.append(Failure(f"stage {view.status}: {error}"))
    if view.status == "stale":
        because = view.entry.get("stale_because") or "a stage it reads has changed since"
        blocks.append(Text(f"Stale: {because}. Rerun the stage to refresh it.", "warning"))
    unfinished = view.status == "not run" and view.dir is not None
    if unfinished:
        blocks.append(
            Text(
                "Not finished: the run was interrupted in this stage, or is still running. "
                "What its work folder holds so far:",
                "warning",
            )
        )
    if view.status in ("done", "stale", *STOPPED) or unfinished:
        try:
            blocks += spec.render(view) if spec else generic_blocks(view)
        except Exception as e:  # odd data must not cost the reader the rest of the page
            logger.warning("report: the %s section could not be drawn: %s", view.name, e)
            blocks.append(Failure(f"this section could not be drawn: {type(e).__name__}: {e}"))
            blocks += generic_blocks(view)
        blocks += leftover_images(view)
    elif view.status == "skipped":
        blocks.append(Text("Not selected for this run (--only).", "note"))
    else:
        blocks.append(Text("Did not run (the run stopped before this stage).", "note"))
    status = "unfinished" if unfinished else view.status
    return Section(view.name, title, prune(blocks), status, _subtitle(view))


def prune(blocks: list[Block]) -> list[Block]:
    """Drop empty tables and groups, so a stage that recorded little shows no bare headings."""
    kept: list[Block] = []
    for b in blocks:
        if isinstance(b, Row | Details):
            b.blocks = prune(b.blocks)
            if not b.blocks:
                continue
        if isinstance(b, KeyValues | Table) and not b.rows:
            continue
        kept.append(b)
    return kept


def _subtitle(view: StageView) -> str:
    parts = []
    if view.seconds is not None and view.status != "skipped":
        parts.append(f"{view.seconds:,.1f} s")
    if view.entry.get("cached"):
        parts.append("unchanged since an earlier run, reused")
    if isinstance(view.entry.get("from_cache"), dict):  # lmforge.core.cache
        built = view.entry["from_cache"].get("built_seconds") or 0.0
        parts.append(f"taken from the stage cache (built in {built:,.1f} s by an earlier run)")
    return " · ".join(parts)


def scalar_metrics(metrics: dict[str, Any], skip: set[str] | frozenset[str] = frozenset()) -> list:
    """``(label, value)`` rows of the numbers and strings among ``metrics``."""
    return [
        (label(k), fmt(v))
        for k, v in metrics.items()
        if k not in skip and isinstance(v, int | float | str | bool)
    ]


def nested_tables(metrics: dict[str, Any], skip: set[str] | frozenset[str] = frozenset()) -> list:
    """Tables for dict-of-dict metrics (per class, per type) and lists of records (history)."""
    blocks: list[Block] = []
    for key, value in metrics.items():
        if key in skip:
            continue
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(c for row in value.values() for c in row))
            rows = [[str(name), *(fmt(row.get(c)) for c in columns)] for name, row in value.items()]
            blocks.append(Table(["", *map(label, columns)], rows, label(key)))
        elif isinstance(value, dict) and value:
            blocks.append(KeyValues(scalar_metrics(value), label(key)))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(c for row in value for c in row))
            rows = [[fmt(row.get(c)) for c in columns] for row in value[:200]]
            blocks.append(Table(list(map(label, columns)), rows, label(key)))
        elif isinstance(value, list) and value:
            blocks.append(KeyValues([(label(key), ", ".join(map(fmt, value[:50])))]))
    return blocks


def generic_blocks(view: StageView) -> list[Block]:
    """Any stage: its scalar metrics, its structured metrics, and its artefacts."""
    blocks: list[Block] = []
    rows = scalar_metrics(view.metrics)
    if rows:
        blocks.append(KeyValues(rows, "Metrics"))
    blocks += nested_tables(view.metrics)
    if view.artifacts:
        rows = [[k, str(v)] for k, v in view.artifacts.items()]
        blocks.append(Details("Artefacts", [Table(["name", "path in the run directory"], rows)]))
    return blocks


def leftover_images(view: StageView) -> list[Block]:
    """Images at the top of the stage folder that the section did not show."""
    if view.dir is None:
        return []
    figures = []
    for path in sorted(view.dir.iterdir()):
        if path.suffix.lower() in IMAGE_TYPES and path.name not in view.used:
            fig = image(path, f"{view.name}/{path.name}")
            if fig is not None:
                figures.append(fig)
    return [Row(figures)] if figures else []
