"""Every figure goes through core.plots.figure: a PNG on its own canvas, CJK labels allowed."""

from __future__ import annotations

import warnings

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
