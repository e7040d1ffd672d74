"""Chinese near-form (形近字) attack: replace the most important characters with characters
that look alike (未→末, 己→已, 拔→拨, 晴→睛), the confusions of a hasty reader, of OCR, and of
writers dodging keyword filters (Li et al. 2019, TextBugger's visual substitutions).

Look-alikes are measured, not listed: each candidate character is drawn at 32 × 32 px in the
font's own em box (so a component keeps its place), blurred (Gaussian, σ = 1 px: a stroke
one pixel off still overlaps), and two characters are compared by the Pearson correlation of
their pixels. A pair with correlation ≥ ``LOOK_ALIKE`` counts as a look-alike. Measured with
Noto Sans CJK SC over all 4.3M pairs of the 2,927 candidates: median 0.35, 99.9th percentile
0.725; 0.75 keeps the most alike 1 pair in 1,729 (66% of the characters have at least one
look-alike, 1.7 on average). On 57 textbook 形近字 pairs (the test's list) the partner is the
most alike character in 44%, among the 8 most alike in 74%, and above the threshold in 63%.
Pixels cannot see a shared part that moves or shrinks (坐/座, 胡/湖, 由/甲): those are missed.

Data, all offline after ``pip install``:
- glyphs: Noto Sans CJK SC (Adobe/Google, SIL Open Font License 1.1), the OTF shipped in
  PyPI's ``mplfonts`` 0.0.11 (BSD-2-Clause; installed with ``--no-deps`` from
  requirements-nodeps.txt, only the font file is read), else the system's (Debian
  ``fonts-noto-cjk``); see ``lmforge.core.plots``;
- candidates: the single characters of snownlp's pinyin table (MIT), the same ~2,900 common
  characters the homophone attack swaps in; other characters are left alone.
"""

from __future__ import annotations

import functools
import random
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.explain.attacks.base import ATTACKS, Attack, cjk_spans
from lmforge.explain.attacks.chinese import pinyin_table
from lmforge.explain.classifier import Classifier

GLYPH_PX = 32  # side of the square a character is drawn in
BLUR_SIGMA = 1.0  # px; tolerates a one-pixel stroke shift between two glyphs
LOOK_ALIKE = 0.75  # pixel correlation; above the 99.9th percentile of all pairs (0.725)


def cjk_font_file() -> tuple[str, int]:
    """(path, face index) of the CJK font glyphs are drawn with: mplfonts' Noto Sans CJK SC,
    else the CJK font plots use."""
    from lmforge.core import plots

    packaged = plots.packaged_cjk_font()
    if packaged is not None:
        return str(packaged), 0
    name = plots.find_cjk_font()
    if name is None:
        raise LmforgeError(
            f"zh-form attack: compares characters by their drawn shapes; {plots.INSTALL_HINT}"
        )
    from matplotlib import font_manager

    faces = [f for f in font_manager.fontManager.ttflist if f.name == name]
    entry = min(faces, key=lambda f: f.weight not in (400, "normal", "regular"))  # not bold
    return entry.fname, getattr(entry, "index", 0)  # FontEntry.index: matplotlib >= 3.10


@functools.cache
def glyph_table() -> tuple[tuple[str, ...], dict[str, int], Any]:
    """(candidate characters, char -> row, (N, 32*32) float32 rows: blurred glyph pixels,
    centred and unit-norm, so a dot product is their Pearson correlation)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    path, index = cjk_font_file()
    font = ImageFont.truetype(path, GLYPH_PX, index=index)
    readings, _, _ = pinyin_table()
    chars = tuple(sorted(c for c in readings if "\u4e00" <= c <= "\u9fff"))
    rows = []
    for c in chars:
        img = Image.new("L", (GLYPH_PX, GLYPH_PX), 0)
        # anchor "mm" = the middle of the advance and of ascender..descender: font metrics,
        # not the ink, so a component sits where the font designer put it
        centre = (GLYPH_PX / 2, GLYPH_PX / 2)
        ImageDraw.Draw(img).text(centre, c, fill=255, font=font, anchor="mm")
        blurred = img.filter(ImageFilter.GaussianBlur(BLUR_SIGMA))
        rows.append(np.asarray(blurred, dtype=np.float32).ravel())
    x = np.stack(rows)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    return chars, {c: i for i, c in enumerate(chars)}, x


def glyph_similarity(a: str, b: str) -> float:
    """Pixel correlation of two candidate characters' glyphs (see the module doc)."""
    _, index, x = glyph_table()
    if a not in index or b not in index:
        raise LmforgeError(f"zh-form: {a!r} or {b!r} is not among the candidate characters")
    return float(x[index[a]] @ x[index[b]])


@functools.cache
def look_alike_table() -> dict[str, tuple[tuple[str, float], ...]]:
    """Every candidate's look-alikes (correlation >= ``LOOK_ALIKE``), most alike first.

    One blocked (N, N) product, about a second; a matrix-vector product per character cost
    60 ms each on a busy machine (BLAS threads contending), more than the whole table.
    """
    chars, _, x = glyph_table()
    table = {}
    for start in range(0, len(chars), 512):
        sims = x[start : start + 512] @ x.T  # (B, N)
        for r, row in enumerate(sims):
            hits = [j for j in (row >= LOOK_ALIKE).nonzero()[0].tolist() if j != start + r]
            hits.sort(key=lambda j: (-row[j], j))
            table[chars[start + r]] = tuple((chars[j], float(row[j])) for j in hits)
    return table


def look_alikes(char: str) -> tuple[tuple[str, float], ...]:
    """``char``'s look-alikes with their correlation, most alike first (empty for a character
    outside the candidate list)."""
    return look_alike_table().get(char, ())


def near_forms(char: str, rng: random.Random, n: int) -> list[str]:
    """Up to ``n`` look-alikes of ``char`` in a seeded random order (never ``char`` itself)."""
    out = [c for c, _ in look_alikes(char)]
    rng.shuffle(out)
    return out[:n]


def _candidates(char: str, rng: random.Random, n: int, clf: Classifier | None) -> list[str]:
    return near_forms(char, rng, n)


ATTACKS.add(
    "zh-form",
    Attack(
        "zh-form",
        "Chinese near-form (形近字) swaps: characters whose drawn glyphs correlate >= 0.75",
        cjk_spans,
        _candidates,
    ),
)
