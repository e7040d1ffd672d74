"""The building blocks a report section is made of; ``templates/blocks.html.j2`` draws each.

A section is a list of these plain values, so a new stage's section is one Python file that
returns blocks: it never writes HTML, and every string it passes is escaped by the template.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from markupsafe import Markup


@dataclass
class Text:
    """A paragraph; ``style`` "note" is muted, "warning" stands out."""

    kind: ClassVar[str] = "text"
    text: str
    style: str = "p"


@dataclass
class KeyValues:
    """A two-column table of named values (already formatted)."""

    kind: ClassVar[str] = "kv"
    rows: list[tuple[str, str]]
    title: str = ""


@dataclass
class Table:
    kind: ClassVar[str] = "table"
    columns: list[str]
    rows: list[list[str]]
    title: str = ""
    note: str = ""


@dataclass
class Figure:
    """An inline SVG (``svg``) or an image as a data: URI (``src``)."""

    kind: ClassVar[str] = "figure"
    caption: str
    svg: Markup | None = None
    src: str | None = None


@dataclass
class Examples:
    """Texts to read in full, each under a short label (e.g. what a filter removed and why)."""

    kind: ClassVar[str] = "examples"
    title: str
    items: list[tuple[str, str]]


@dataclass
class Details:
    """Blocks folded under a summary line, open on click."""

    kind: ClassVar[str] = "details"
    summary: str
    blocks: list[Any] = field(default_factory=list)


@dataclass
class Row:
    """Blocks side by side (wrapping on narrow screens); ``narrow``: three to a 1280 px page
    instead of two (a set of heatmaps of one example)."""

    kind: ClassVar[str] = "row"
    blocks: list[Any] = field(default_factory=list)
    narrow: bool = False


@dataclass
class Failure:
    """What went wrong, shown in place of (or above) what could still be drawn."""

    kind: ClassVar[str] = "failure"
    message: str


@dataclass
class Code:
    kind: ClassVar[str] = "code"
    text: str
    title: str = ""


@dataclass
class Tokens:
    """A text cut into tokens, each shown as its own chip."""

    kind: ClassVar[str] = "tokens"
    title: str
    tokens: list[str]


@dataclass
class Frame:
    """A whole HTML page a stage wrote, shown inline in a sandboxed frame (``srcdoc``): no
    script in it runs and it cannot reach this page, yet the report stays one file."""

    kind: ClassVar[str] = "frame"
    title: str
    html: str
    height: int = 320  # CSS pixels; the frame scrolls


Block = (
    Tokens | Text | KeyValues | Table | Figure | Examples | Details | Row | Failure | Code | Frame
)


@dataclass
class Section:
    """One stage (or run-level topic) of the report."""

    id: str
    title: str
    blocks: list[Block]
    status: str = "done"  # done, failed, skipped, not run, or "" for run-level sections
    subtitle: str = ""


def fmt(value: Any) -> str:
    """A number as a reader wants it: thousands separators, 4 significant digits, no 1e-05."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 1e9 or abs(value) < 1e-3:
            return f"{value:.3e}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return str(value)


def label(key: str) -> str:
    """``tokens_per_second`` -> ``tokens per second``."""
    return key.replace("_", " ")
