"""lmforge compare: runs side by side, what differs in their recipes, curves overlaid."""

from __future__ import annotations

import re

import pytest
from conftest import write_run

from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from lmforge.report import compare_runs


def test_compare_two_runs(tmp_path, capsys):
    a = write_run(tmp_path / "lr-3e-3", lr=3e-3)
    b = write_run(tmp_path / "lr-1e-3", lr=1e-3, evaluate_fails=False)
    out = tmp_path / "cmp.html"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    # the recipe key that differs, with both values; identical keys are not listed
    row = re.search(r"<tr><td>pretrain\.lr</td><td>([^<]*)</td><td>([^<]*)</td></tr>", html)
    assert row and row.groups() == ("0.003", "0.001")
    assert "<td>pretrain.max_steps</td>" not in html
    # one metrics table per stage, one column per run
    assert "<th>lr-3e-3</th><th>lr-1e-3</th>" in html
    assert "evaluate failed" in html and "evaluate done" in html
    # overlaid curves: one legend entry per run in the loss plot
    assert "Pretraining loss (train)" in html and "Fine-tuning loss (train)" in html
    assert html.count(">lr-3e-3</text>") >= 2 and html.count(">lr-1e-3</text>") >= 2
    assert not re.search(r'(src|href)="(?!data:|#)', html)


def test_compare_needs_runs(tmp_path, capsys):
    a = write_run(tmp_path / "a")
    with pytest.raises(LmforgeError, match="at least two"):
        compare_runs([a])
    (tmp_path / "b").mkdir()
    assert main(["compare", str(a), str(tmp_path / "b")]) == 1
    assert "not an lmforge run directory" in capsys.readouterr().err
