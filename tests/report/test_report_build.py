"""report.html: one self-contained page with a section per stage, whatever state the run is in."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest
from conftest import ZH_REVIEW, write_run

from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from lmforge.report import build_report, report_command, write_report
from lmforge.report.sections import SECTIONS, load_sections


def sections_of(html: str) -> dict[str, str]:
    """stage id -> the HTML of its section."""
    parts = re.split(r'(?=<section class="stage" id="section-)', html)
    return {
        re.match(r'<section class="stage" id="section-([^"]+)"', p).group(1): p
        for p in parts
        if p.startswith("<section")
    }


def test_every_stage_gets_its_section_and_the_page_is_self_contained(fake_run):
    path = write_report(fake_run)
    assert path == fake_run / "report.html"
    html = path.read_text(encoding="utf-8")
    found = sections_of(html)
    assert list(found) == [
        "overview",
        "data",
        "tokenizer",
        "pretrain",
        "finetune",
        "evaluate",
        "compress",
        "explain",
        "serve",
        "improve",
        "audit",
        "cost",
    ]
    # nothing fetched from elsewhere: no external scripts, styles, images or fonts
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    assert "<link" not in html and "@import" not in html and "url(http" not in html
    assert html.count("<svg") >= 5  # funnel, token lengths, loss, lr, throughput, ...
    assert html.count('src="data:image/png;base64,') >= 2  # confusion matrix, compress plot


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    """The report of the hand-written run, drawn once for the tests that only read it."""
    return build_report(write_run(tmp_path_factory.mktemp("page") / "run"))


def test_sections_show_what_each_stage_measured(page):
    found = sections_of(page)
    data = found["data"]
    assert "100 → 90" in data and "cn id" in data and "too_short" in data
    assert ZH_REVIEW in data  # a removed near-duplicate, in Chinese, readable
    assert "the test split is empty" in data
    assert "Loss per step" in found["pretrain"] and "Learning rate" in found["pretrain"]
    assert "Throughput" in found["pretrain"] and "2.40% of the measured" in found["pretrain"]
    finetune = found["finetune"]
    assert "baseline: tfidf+logreg" in finetune and "1.07×" in finetune  # 0.75 / 0.70
    assert "正面" in finetune and "1,000 of 100,000 (1%)" in finetune
    assert "Confusion matrix" in finetune
    assert "Loss per epoch" in finetune
    cost = found["cost"]
    assert "2.458e+11" in cost  # 4e6 FLOPs/token x 61,440 tokens
    assert "NVIDIA A100" in cost and "NVIDIA H100" in cost and "NVIDIA H200" in cost


def test_a_failed_stage_says_so_and_the_page_still_renders(page):
    found = sections_of(page)
    assert "stage failed: 模型目录不存在: no model" in found["evaluate"]
    assert "failed in stage evaluate" in found["overview"]


def test_an_unknown_stage_is_drawn_generically(page):
    audit = sections_of(page)["audit"]
    assert "size ratio" in audit and "int8" in audit
    assert "audit/fairness.png" in audit and "data:image/png;base64," in audit


def test_text_from_the_run_is_escaped(page):
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page


def test_a_section_that_breaks_falls_back_to_the_generic_view(fake_run, monkeypatch):
    spec = SECTIONS.get("finetune")

    def broken(view):
        raise KeyError("accuracy")

    monkeypatch.setitem(SECTIONS._items, "finetune", type(spec)(spec.title, broken))
    finetune = sections_of(build_report(fake_run))["finetune"]
    assert "this section could not be drawn: KeyError" in finetune
    assert "macro f1" in finetune  # the generic metrics table instead


@pytest.mark.parametrize(
    "damage",
    ["torn summary", "no summary", "torn history", "empty stage folders", "stage entry not a dict"],
)
def test_write_report_never_raises_on_a_broken_run(fake_run, damage):
    if damage == "torn summary":
        (fake_run / "summary.json").write_text('{"stages": {"data": {"status": "do')
    elif damage == "no summary":
        (fake_run / "summary.json").unlink()
    elif damage == "torn history":
        with (fake_run / "pretrain" / "history.jsonl").open("a") as f:
            f.write('{"step": 31, "lo')
    elif damage == "empty stage folders":
        for d in ("data", "tokenizer", "pretrain", "finetune"):
            for p in (fake_run / d).iterdir():
                p.unlink()
    else:
        summary = json.loads((fake_run / "summary.json").read_text())
        summary["stages"]["pretrain"] = ["not", "a", "dict"]
        (fake_run / "summary.json").write_text(json.dumps(summary))
    path = write_report(fake_run)
    html = path.read_text(encoding="utf-8")
    assert 'id="section-overview"' in html
    if damage == "torn summary":
        assert "summary.json could not be read" in html
    if damage == "torn history":
        assert "history.jsonl: line 31 is not JSON (skipped)" in html


def test_write_report_writes_a_page_even_when_drawing_fails(fake_run, monkeypatch):
    import lmforge.report.build as build

    def broken(run_dir):
        raise RuntimeError("disk of templates on fire")

    monkeypatch.setattr(build, "build_report", broken)
    html = build.write_report(fake_run).read_text(encoding="utf-8")
    assert "the report could not be drawn: RuntimeError: disk of templates on fire" in html


def test_an_interrupted_stage_shows_its_partial_history(fake_run):
    summary = json.loads((fake_run / "summary.json").read_text())
    summary["stages"]["pretrain"] = {"status": "failed", "seconds": 5, "error": "Killed"}
    (fake_run / "summary.json").write_text(json.dumps(summary))
    (fake_run / "pretrain").rename(fake_run / ".pretrain.partial")
    pretrain = sections_of(build_report(fake_run))["pretrain"]
    assert "stage failed: Killed" in pretrain and "Loss per step" in pretrain


def test_a_stage_that_did_not_run_is_listed_not_drawn(fake_run):
    summary = json.loads((fake_run / "summary.json").read_text())
    del summary["stages"]["compress"]
    (fake_run / "summary.json").write_text(json.dumps(summary))
    html = build_report(fake_run)
    assert "Did not run" in sections_of(html)["compress"]


def test_report_on_a_directory_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LmforgeError, match="not an lmforge run directory"):
        report_command(tmp_path)
    assert main(["report", str(tmp_path)]) == 1
    assert "not an lmforge run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_report_command_rebuilds_the_page(fake_run, capsys):
    assert main(["report", str(fake_run)]) == 0
    assert str(fake_run / "report.html") in capsys.readouterr().out
    assert (fake_run / "report.html").stat().st_size > 10_000


def test_every_section_file_registers_the_stage_it_is_named_after():
    import lmforge.report.sections as package

    registry = load_sections()
    modules = [m.name for m in pkgutil.iter_modules(package.__path__)]
    assert modules and sorted(modules) == registry.names()
    for name in modules:
        module = importlib.import_module(f"lmforge.report.sections.{name}")
        assert registry.get(name).render is module.render


def test_templates_ship_with_the_package():
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["lmforge"]
    assert "report/templates/*.html.j2" in globs


def test_a_run_whose_stages_all_succeeded_reads_complete(tmp_path):
    html = write_report(write_run(tmp_path / "a", evaluate_fails=False)).read_text("utf-8")
    assert "stage failed" not in html and "lmforge run report · complete" in html


@pytest.mark.slow
def test_report_of_a_real_tiny_quickstart_run(tmp_path):
    from helpers import TINY

    run = tmp_path / "run"
    assert main(["run", "quickstart", "--out", str(run), *TINY]) == 0
    assert (run / "report.html").is_file()  # every run ends with its report
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    found = sections_of((run / "report.html").read_text(encoding="utf-8"))
    assert list(found) == [
        "overview",
        *("data", "tokenizer", "pretrain", "finetune", "evaluate", "compress", "explain"),
        "cost",
    ]
    assert "stage failed" not in "".join(found.values())
    assert "Loss per step" in found["pretrain"] and "Confusion matrix" in found["finetune"]
    assert "baseline: tfidf+logreg" in found["finetune"]
    assert "Repeating this run" in found["cost"]
    assert "Artefacts side by side" in found["compress"] and "Pareto front" in found["compress"]
    explain = found["explain"]
    assert "Example 1: attention rollout" in explain and "<iframe sandbox" in explain
    assert "AOPC, Integrated Gradients" in explain


def test_a_failed_stage_does_not_show_an_earlier_runs_output(fake_run):
    summary = json.loads((fake_run / "summary.json").read_text())
    summary["stages"]["finetune"] = {"status": "failed", "seconds": 1, "error": "out of memory"}
    (fake_run / "summary.json").write_text(json.dumps(summary))
    finetune = sections_of(build_report(fake_run))["finetune"]
    assert "stage failed: out of memory" in finetune and "Confusion matrix" not in finetune


def test_a_stage_killed_mid_way_shows_its_work_folder(fake_run):
    # kill -9 during pretraining: no summary entry, only the stage's work folder
    summary = json.loads((fake_run / "summary.json").read_text())
    for stage in ("pretrain", "finetune", "evaluate", "compress"):
        del summary["stages"][stage]
    (fake_run / "summary.json").write_text(json.dumps(summary))
    (fake_run / "pretrain").rename(fake_run / ".pretrain.partial")
    found = sections_of(build_report(fake_run))
    assert "Not finished" in found["pretrain"] and "Loss per step" in found["pretrain"]
    assert "Did not run" in found["finetune"]
    assert "incomplete" in found["overview"]


def test_interrupted_and_stale_stages_say_so(fake_run):
    summary = json.loads((fake_run / "summary.json").read_text())
    summary["stages"]["evaluate"] = {"status": "done", "seconds": 1, "metrics": {"size_mb": 9.0}}
    summary["stages"]["pretrain"].update(status="interrupted", error="interrupted (Ctrl-C)")
    summary["stages"]["finetune"].update(status="stale", stale_because="'pretrain' was rerun")
    (fake_run / "summary.json").write_text(json.dumps(summary))
    (fake_run / "pretrain").rename(fake_run / ".pretrain.partial")
    found = sections_of(build_report(fake_run))
    assert "stage interrupted: interrupted (Ctrl-C)" in found["pretrain"]
    assert "Loss per step" in found["pretrain"]  # from the kept work folder
    assert "Stale: &#39;pretrain&#39; was rerun" in found["finetune"]
    assert "Confusion matrix" in found["finetune"]  # its outputs are complete
    assert "interrupted in stage pretrain" in found["overview"]


def test_a_failed_run_ends_with_a_report_that_says_so(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: broken\ndata:\n  sources:\n    - path: {empty}\n", encoding="utf-8")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run")]) == 1
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "stage failed" in html and "no documents" in html
