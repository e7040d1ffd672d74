"""Plots for the report as inline SVG, and saved images as data: URIs.

SVGs are drawn with ``lmforge.core.plots.figure`` (the project's one plotting helper) and
keep their text as ``<text>`` elements (``svg.fonttype: none``): the browser lays out the
labels with its own fonts, so Chinese renders wherever the viewer has a CJK font, even when
matplotlib on the machine that wrote the report had none, and the files stay small.
"""

from __future__ import annotations

import base64
import math
import re
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from lmforge.core.plots import CJK_FONTS, figure
from lmforge.report.blocks import Figure

MAX_POINTS = 1500  # a long run's curve is thinned to this many points per series
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
}


@dataclass
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    style: str = "-"  # matplotlib format string: "-" line, "o-" line with markers


def svg(draw: Callable[[Any, Any], None], size: tuple[float, float] = (6.4, 3.0)) -> Markup:
    """Run ``draw(fig, ax)`` on a fresh figure and return it as inline SVG markup."""
    from matplotlib import rc_context

    rc = {
        "svg.fonttype": "none",
        # unique ids per figure: several inline SVGs share one HTML document
        "svg.hashsalt": uuid.uuid4().hex,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", *CJK_FONTS],
    }
    with tempfile.TemporaryDirectory() as tmp, rc_context(rc):
        path = Path(tmp) / "plot.svg"
        with figure(path, size) as (fig, ax):
            draw(fig, ax)
        text = path.read_text(encoding="utf-8")
    return Markup(_inline(text))  # matplotlib's own SVG output, not user text


def _inline(text: str) -> str:
    """Drop the XML prologue and metadata; let the SVG scale with the page."""
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.S)
    return re.sub(
        r'<svg([^>]*?) width="[^"]*" height="[^"]*"',
        r'<svg\1 class="plot" preserveAspectRatio="xMidYMid meet"',
        text,
        count=1,
    )


def thin(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """Every k-th point so at most ``MAX_POINTS`` remain (the last point is always kept)."""
    step = max(1, -(-len(xs) // MAX_POINTS))
    idx = list(range(0, len(xs), step))
    if idx and idx[-1] != len(xs) - 1:
        idx.append(len(xs) - 1)
    return [xs[i] for i in idx], [ys[i] for i in idx]


def line_chart(
    series: Sequence[Series],
    caption: str,
    xlabel: str,
    ylabel: str,
    logy: bool = False,
) -> Figure | None:
    """Curves sharing one axis; None when no series has a point."""
    series = [s for s in series if len(s.x)]
    if not series:
        return None

    def draw(fig: Any, ax: Any) -> None:
        for s in series:
            x, y = thin(list(s.x), list(s.y))
            ax.plot(x, y, s.style, label=s.label, markersize=3, linewidth=1.4)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(series) > 1 or series[0].label:
            ax.legend(fontsize=8)

    return Figure(caption=caption, svg=svg(draw, (5.0, 3.0)))


def funnel_chart(
    steps: Sequence[str], documents: Sequence[int], characters: Sequence[int], caption: str
) -> Figure:
    """Documents and characters left after each step, as a share of what was loaded."""

    def draw(fig: Any, ax: Any) -> None:
        d0, c0 = max(documents[0], 1), max(characters[0], 1)
        docs = [100 * d / d0 for d in documents]
        chars = [100 * c / c0 for c in characters]
        ys = range(len(steps))
        ax.barh([y - 0.2 for y in ys], docs, 0.4, label="documents")
        ax.barh([y + 0.2 for y in ys], chars, 0.4, label="characters")
        # when little is removed, start the axis near the smallest share so steps differ
        low = min(docs + chars)
        left = 0 if low < 60 else 5 * math.floor((low - (100 - low) - 1) / 5)
        for y, d, c in zip(ys, documents, characters, strict=True):
            ax.text(left + 0.5, y - 0.2, f"{d:,}", va="center", fontsize=7, color="white")
            ax.text(left + 0.5, y + 0.2, f"{c:,}", va="center", fontsize=7, color="white")
        ax.set_yticks(list(ys), list(steps))
        ax.invert_yaxis()
        ax.set_xlim(left, 100)
        ax.set_xlabel("% of what was loaded" + (f" (axis starts at {left}%)" if left else ""))
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)

    return Figure(caption=caption, svg=svg(draw, (5.0, 0.36 * len(steps) + 1.3)))


def image(path: Path, caption: str, max_width: int | None = None) -> Figure | None:
    """A saved plot inlined (PNG/JPEG as base64 data: URI, SVG as markup); None if unreadable.

    ``max_width``: a wider PNG is scaled down to it first (a 128-token attention heatmap is
    ~2,000 px wide and shown at ~600: full size would make the page megabytes heavier).
    """
    kind = IMAGE_TYPES.get(path.suffix.lower())
    if kind is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if max_width is not None and kind == "image/png":
        data = _narrower_png(data, max_width)
    # SVG files go in as images too: an <img> never runs a script the file might hold
    return Figure(caption=caption, src=f"data:{kind};base64,{base64.b64encode(data).decode()}")


def _narrower_png(data: bytes, max_width: int) -> bytes:
    """``data`` scaled to ``max_width`` pixels wide (aspect kept) in a 256-colour palette (a
    plot has few colours; scaling alone barely shrinks the file: a 1,920 px attention heatmap
    of 230 KB is 200 KB at 1,240 px in RGB, 115 KB in a palette); unchanged if narrower or
    unreadable."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width <= max_width:
                return data
            height = max(1, round(im.height * max_width / im.width))
            small = im.convert("RGB").resize((max_width, height), Image.Resampling.LANCZOS)
            small = small.quantize(256, dither=Image.Dither.NONE)
    except (OSError, UnidentifiedImageError, ValueError):
        return data
    out = io.BytesIO()
    small.save(out, "PNG", optimize=True)
    return out.getvalue()
