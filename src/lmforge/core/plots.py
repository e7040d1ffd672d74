"""One way to draw a figure: no pyplot global state, a CJK-capable font, PNG written whole.

Every plot lmforge saves (loss curves, confusion matrices, per-type scores, few-shot curves,
attention maps) goes through ``figure()``, so they share a style and Chinese labels render
wherever a CJK font is installed. The font lmforge's install names is Noto Sans CJK SC, from
PyPI's ``mplfonts`` (its bundled OTF is registered with matplotlib in-process; nothing is copied
or configured) or the system (Debian / Ubuntu: ``apt-get install fonts-noto-cjk``); any font of
``CJK_FONTS`` that really holds the glyphs is used. Without one, matplotlib's per-glyph
"missing from font" warnings are silenced and one warning per figure with Chinese text says
what to install instead.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
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


CJK_PROBE = "中文体育政治经济"  # characters a CJK font must draw to count as one
INSTALL_HINT = (
    "install a CJK font so Chinese text renders instead of empty boxes: "
    "pip install --no-deps mplfonts==0.0.11, or apt-get install fonts-noto-cjk "
    "(Debian/Ubuntu) and rm -rf ~/.cache/matplotlib"
)


def _covers(path: str, text: str) -> bool:
    """Whether the font file at ``path`` has a glyph for every character of ``text``."""
    from matplotlib.ft2font import FT2Font

    try:
        charmap = FT2Font(path).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False
    return all(ord(c) in charmap for c in text)


def packaged_cjk_font() -> Path | None:
    """Noto Sans CJK SC (SIL OFL 1.1) as shipped by PyPI's ``mplfonts``, if installed.

    Located without importing ``mplfonts`` (its modules pull ``fire``; lmforge installs it
    with ``--no-deps`` and reads only the font file).
    """
    spec = importlib.util.find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "fonts" / "NotoSansCJKsc-Regular.otf"
    return path if path.is_file() else None


@functools.cache
def find_cjk_font() -> str | None:
    """Name of the first installed font from ``CJK_FONTS`` that draws Chinese, or None."""
    from matplotlib import font_manager

    packaged = packaged_cjk_font()
    if packaged is not None and all(
        f.fname != str(packaged) for f in font_manager.fontManager.ttflist
    ):
        font_manager.fontManager.addfont(packaged)  # no system font needed
    paths: dict[str, str] = {}
    for font in font_manager.fontManager.ttflist:
        paths.setdefault(font.name, font.fname)
    return next(
        (name for name in CJK_FONTS if name in paths and _covers(paths[name], CJK_PROBE)), None
    )


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds CJK ideographs (the characters a Latin font lacks)."""
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text)


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
    from matplotlib.text import Text

    from lmforge.core.log import logger

    font = find_cjk_font()
    rc = {"font.sans-serif": [font, "DejaVu Sans"], "font.family": "sans-serif"} if font else {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rc_context(rc), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        fig = Figure(figsize=size, layout="constrained" if constrained else None)
        FigureCanvasAgg(fig)
        yield fig, fig.add_subplot()
        if font is None and any(has_cjk(t.get_text()) for t in fig.findobj(Text)):
            logger.warning("figure %s has Chinese text but no CJK font: %s", path, INSTALL_HINT)
        if not constrained:
            fig.tight_layout()
        fig.savefig(path, dpi=dpi)
