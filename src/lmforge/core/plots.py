"""One way to draw a figure: no pyplot global state, a CJK-capable font, PNG written whole.

Every plot lmforge saves (loss curves, confusion matrices, per-type scores, few-shot curves)
goes through ``figure()``, so they share a style and Chinese labels render wherever a CJK
font is installed (otherwise matplotlib's per-glyph "missing from font" warnings are
silenced rather than flooding the log).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Fonts tried, in order, so CJK labels render instead of empty boxes.
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Noto Serif CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "Arial Unicode MS",
)


def find_cjk_font() -> str | None:
    """Name of the first installed font from ``CJK_FONTS``, or None if there is none."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


@contextlib.contextmanager
def figure(
    path: str | Path, size: tuple[float, float], dpi: int = 120, constrained: bool = True
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(fig, ax)`` for one plot; on leaving the block the PNG is saved at ``path``.

    The figure lives on its own Agg canvas (never pyplot's global figure list, so nothing
    leaks across calls or threads) and uses a CJK font when one is installed.
    """
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    font = find_cjk_font()
    rc = {"font.sans-serif": [font, "DejaVu Sans"], "font.family": "sans-serif"} if font else {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rc_context(rc), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        fig = Figure(figsize=size, layout="constrained" if constrained else None)
        FigureCanvasAgg(fig)
        yield fig, fig.add_subplot()
        if not constrained:
            fig.tight_layout()
        fig.savefig(path, dpi=dpi)
