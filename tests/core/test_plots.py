"""Every figure goes through core.plots.figure: a PNG on its own canvas, CJK labels allowed."""

from __future__ import annotations

import logging
import warnings

from lmforge.core import plots
from lmforge.core.plots import figure


def test_figure_writes_a_png_and_leaks_no_pyplot_state(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing CJK glyph must not warn once per character
        with figure(tmp_path / "sub" / "p.png", (3, 2)) as (_, ax):
            ax.bar(["体育", "政治", "sport"], [1, 2, 3])
            ax.set_title("中文标题")
    data = (tmp_path / "sub" / "p.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert plt.get_fignums() == before


def test_a_failing_plot_writes_no_file(tmp_path):
    try:
        with figure(tmp_path / "p.png", (3, 2)) as (_, ax):
            ax.plot([1, 2], [1, 2])
            raise RuntimeError("drawing failed")
    except RuntimeError:
        pass
    assert not (tmp_path / "p.png").exists()


def test_the_installed_cjk_font_draws_chinese(tmp_path):
    name = plots.find_cjk_font()
    assert name is not None, plots.INSTALL_HINT  # part of the README's install
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with plots.figure(tmp_path / "zh.png", (3, 2)) as (_, ax):
            ax.set_title("体育 政治 sport")
            ax.set_xticks([0, 1], ["正面", "负面"])
    assert not [w for w in caught if "missing from" in str(w.message)]
    assert (tmp_path / "zh.png").read_bytes()[:4] == b"\x89PNG"


def test_without_a_cjk_font_one_warning_names_the_package(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(plots, "find_cjk_font", lambda: None)
    with caplog.at_level(logging.WARNING, logger="lmforge"):
        with plots.figure(tmp_path / "zh.png", (3, 2)) as (_, ax):
            ax.set_title("体育")
        with plots.figure(tmp_path / "en.png", (3, 2)) as (_, ax):
            ax.set_title("sport")
    hints = [r for r in caplog.records if "fonts-noto-cjk" in r.getMessage()]
    assert len(hints) == 1 and "zh.png" in hints[0].getMessage()


def test_a_font_without_chinese_glyphs_does_not_count():
    from matplotlib import font_manager

    dejavu = font_manager.findfont("DejaVu Sans")
    assert not plots._covers(dejavu, plots.CJK_PROBE)


def test_the_pypi_font_alone_draws_chinese(monkeypatch):
    """With every system CJK font hidden, mplfonts' Noto Sans CJK SC (a pinned PyPI package)
    is found and draws Chinese labels with no missing-glyph warning."""
    from matplotlib import font_manager, rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    packaged = plots.packaged_cjk_font()
    assert packaged is not None, plots.INSTALL_HINT  # requirements-nodeps.txt installs it
    manager = font_manager.fontManager
    latin_only = [f for f in manager.ttflist if "CJK" not in f.name or f.fname == str(packaged)]
    monkeypatch.setattr(manager, "ttflist", latin_only)
    plots.find_cjk_font.cache_clear()
    manager._findfont_cached.cache_clear()  # findfont memoises by name
    try:
        name = plots.find_cjk_font()
        assert name is not None
        with rc_context({"font.family": "sans-serif", "font.sans-serif": [name]}):
            assert font_manager.findfont(name, fallback_to_default=False) == str(packaged)
            fig = Figure(figsize=(3, 2))
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            ax.set_title("体育 政治 sport")
            ax.set_xticks([0, 1], ["正面", "负面"])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fig.canvas.draw()
        assert not [w for w in caught if "missing from" in str(w.message)]
    finally:
        monkeypatch.undo()
        plots.find_cjk_font.cache_clear()
        manager._findfont_cached.cache_clear()
