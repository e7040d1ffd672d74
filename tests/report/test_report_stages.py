"""The sections of the later stages: compress, explain, serving, improve. Each shows the numbers
its stage wrote (read from the stage's JSON files and store, not recomputed), and says so
plainly when the stage failed, was skipped or did not record a part."""

from __future__ import annotations

import base64
import html as htmllib
import io
import json
import re
import shutil

import pytest
from conftest import ZH_REVIEW, write_run
from test_report_build import sections_of

from lmforge.report import build_report


@pytest.fixture(scope="module")
def found(tmp_path_factory) -> dict[str, str]:
    """The sections of the hand-written run's report, drawn once."""
    return sections_of(build_report(write_run(tmp_path_factory.mktemp("stages") / "run")))


@pytest.fixture
def run(fake_run):
    """The hand-written run with only its later stages recorded: the earlier stages' sections
    cost seconds of plotting and these tests read only the later ones."""
    summary = json.loads((fake_run / "summary.json").read_text("utf-8"))
    for stage in ("data", "tokenizer", "pretrain", "finetune", "evaluate"):
        del summary["stages"][stage]
    (fake_run / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), "utf-8")
    return fake_run


def _edit_summary(run, stage: str, entry: dict | None) -> None:
    summary = json.loads((run / "summary.json").read_text("utf-8"))
    if entry is None:
        del summary["stages"][stage]
    else:
        summary["stages"][stage] = entry
    (run / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), "utf-8")


# ----------------------------------------------------------------------------- compress
def test_compress_shows_the_pareto_table_from_pareto_json(found):
    compress = found["compress"]
    assert "Artefacts side by side" in compress
    # the numbers of pareto.json, as written: sizes, latencies, speed-ups, quality changes
    for cell in ("23.5", "0.2561", "13.70", "250.00", "3.01×", "2.45×", "-0.05", "412.8"):
        assert f"<td>{cell.replace('0.2561', '0.26×')}</td>" in compress, cell
    assert "<th>accuracy</th>" in compress  # the quality metric by name
    assert "<th>p50 latency b32 (ms)</th>" in compress
    row = re.search(r"<tr><td>onnx-int8</td>(.*?)</tr>", compress).group(1)
    assert row.endswith("<td>✓</td>")  # on the Pareto front; the others are not
    assert "<tr><td>onnx</td>" in compress and "Pareto front" in compress
    assert "better on one): onnx-int8." in compress
    assert "int8 matmuls 38" in compress and "max abs diff 7.450e-08" in compress
    assert "Every artefact scored on the same test examples (20)" in compress
    assert "Quality against latency" in compress and "data:image/png;base64," in compress
    assert "compress/tradeoff.png" not in compress  # shown as the plot, not again below it


def test_compress_names_the_chosen_artefact_when_the_stage_records_one(run):
    pareto = json.loads((run / "compress" / "pareto.json").read_text())
    pareto.update(chosen="onnx-int8", chosen_because="fastest within 0.05 of the source")
    (run / "compress" / "pareto.json").write_text(json.dumps(pareto))
    compress = sections_of(build_report(run))["compress"]
    assert "Chosen: onnx-int8 (fastest within 0.05 of the source)." in compress
    assert "<td>✓ chosen</td>" in compress


def test_compress_without_pareto_json_shows_the_summary_numbers(run):
    (run / "compress" / "pareto.json").unlink()
    compress = sections_of(build_report(run))["compress"]
    assert "No compress/pareto.json" in compress
    assert "<td>onnx-int8</td><td>0.7</td><td>22,715,879</td><td>23.46</td>" in compress
    assert "this section could not be drawn" not in compress


def test_compress_failed_says_so_and_draws_no_table(run):
    _edit_summary(run, "compress", {"status": "failed", "error": "onnx export: 不支持"})
    shutil.rmtree(run / "compress")  # a failed stage leaves no completed folder
    compress = sections_of(build_report(run))["compress"]
    assert "stage failed: onnx export: 不支持" in compress
    assert "Artefacts side by side" not in compress and "this section could not" not in compress


# ------------------------------------------------------------------------------ explain
def test_explain_shows_the_attention_figures_of_its_subfolder(found):
    explain = found["explain"]
    # 2 examples x (layer 0, layer 5, rollout) from explain/attention/, plus the TCAV plot
    assert explain.count('src="data:image/png;base64,') == 7
    for caption in ("Example 1: layer 0, heads averaged", "Example 1: layer 5, heads averaged"):
        assert caption in explain
    assert "Example 1: attention rollout" in explain and "Example 2: attention rollout" in explain
    assert explain.index("Example 1: layer 5") < explain.index("Example 1: attention rollout")
    assert "explain/attention.html (interactive)" in explain
    assert "<script>var x" not in explain  # the interactive page is named, not inlined


def test_explain_embeds_the_attributions_page_sandboxed(found):
    explain = found["explain"]
    frame = re.search(r'<iframe sandbox="" [^>]*srcdoc="([^"]*)"', explain)
    assert frame, "no sandboxed frame"
    page = htmllib.unescape(frame.group(1))
    assert '<span title="+0.4100"' in page and "干净" in page  # the stage's page, intact


def test_explain_shows_faithfulness_attacks_and_tcav_as_recorded(found):
    explain = found["explain"]
    assert "AOPC, Integrated Gradients</th><td>0.1234" in explain
    assert "AOPC, random order (reference)</th><td>0.0123" in explain
    assert "IG completeness error (max)</th><td>0.0031" in explain
    # attack success rates from the summary's attacks entry (0.375, 0.5)
    char = re.search(r"<tr><td>char</td>(.*?)</tr>", explain).group(1)
    assert char == (
        "<td>8</td><td>100.0%</td><td>62.5%</td><td>37.5%</td><td>12.5%</td><td>12.5</td>"
    )
    assert "<tr><td>zh-char</td><td>8</td><td>100.0%</td><td>50.0%</td><td>50.0%</td>" in explain
    # the flipped text, with what the attack changed
    assert "predicted 正面 → 负面, 1 of 28 changed" in explain and "干 → 千" in explain
    # TCAV per concept and layer, from tcav.json
    assert "<td>体育</td><td>正面</td><td>layer.5</td><td>0.97</td><td>0.9 ± 0.05</td>" in explain
    assert "<td>0.0012</td><td>yes</td>" in explain and "<td>0.0955</td><td>no</td>" in explain


def test_explain_shows_guard_checks_when_recorded(run):
    summary = json.loads((run / "summary.json").read_text("utf-8"))
    guards = {"prompts": 4, "refused": 1, "checks": [{"guard": "ban", "passed": True}]}
    summary["stages"]["explain"]["metrics"]["guards"] = guards
    (run / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), "utf-8")
    explain = sections_of(build_report(run))["explain"]
    assert "Guard checks" in explain and "<th>refused</th><td>1</td>" in explain
    assert "<td>ban</td><td>true</td>" in explain


def test_explain_without_attacks_or_tcav_leaves_them_out(run):
    summary = json.loads((run / "summary.json").read_text("utf-8"))
    for key in ("attacks", "tcav"):
        del summary["stages"]["explain"]["metrics"][key]
    (run / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), "utf-8")
    for name in ("attacks.jsonl", "tcav.json", "tcav.png"):
        (run / "explain" / name).unlink()
    explain = sections_of(build_report(run))["explain"]
    assert "Adversarial attacks" not in explain and "TCAV" not in explain
    assert "Example 2: attention rollout" in explain and "could not be drawn" not in explain


@pytest.mark.parametrize("status", ["failed", "skipped"])
def test_explain_failed_or_skipped_shows_no_stale_figures(run, status):
    _edit_summary(run, "explain", {"status": status, "error": "CUDA 不可用"})
    explain = sections_of(build_report(run))["explain"]
    assert "data:image/png" not in explain and "<iframe" not in explain
    if status == "failed":
        assert "stage failed: CUDA 不可用" in explain
    else:
        assert "Not selected for this run" in explain


def test_wide_attention_maps_are_scaled_down_and_a_heavy_page_lists_the_rest(run, monkeypatch):
    from PIL import Image

    import lmforge.report.sections.explain as section

    Image.new("RGB", (2600, 2600), "navy").save(run / "explain/attention/ex0_layer0.png")
    monkeypatch.setattr(section, "ATTENTION_BUDGET", 1)  # the first figure spends it
    explain = sections_of(build_report(run))["explain"]
    src = re.search(r'src="data:image/png;base64,([^"]+)" alt="Example 1: layer 0', explain)
    with Image.open(io.BytesIO(base64.b64decode(src.group(1)))) as im:
        assert im.size == (section.ATTENTION_WIDTH, section.ATTENTION_WIDTH)
    assert "Not inlined (the page would be too heavy): explain/attention/ex0_layer5.png" in explain
    assert explain.count('alt="Example') == 1


# ------------------------------------------------------------------------ serve, improve
def test_serving_section_counts_what_the_feedback_store_holds(found):
    serve = found["serve"]
    assert "<th>responses logged</th><td>5</td>" in serve
    assert "<th>feedback records</th><td>4</td>" in serve
    assert "<th>with a correction</th><td>2</td>" in serve
    assert "<th>mean rating (1-5)</th><td>3.00</td>" in serve  # (5 + 2 + 1 + 4) / 4
    assert "<td>/v1/classify</td><td>finetune/merged</td><td>5</td>" in serve
    assert "corrected to 负面 (标签错了)" in serve and ZH_REVIEW[:20] in serve


def test_a_run_that_was_not_served_has_no_serving_section(run):
    shutil.rmtree(run / "serve")
    assert "serve" not in sections_of(build_report(run))


def test_improve_shows_before_and_after_from_result_json(found):
    improve = found["improve"]
    assert "<tr><td>accuracy (main)</td><td>0.75</td><td>0.85</td><td>+0.1</td></tr>" in improve
    assert "<tr><td>macro f1</td><td>0.7</td><td>0.81</td><td>+0.11</td></tr>" in improve
    assert "<th>corrections learned from</th><td>7</td>" in improve
    assert "<th>skipped: no input</th><td>2</td>" in improve
    assert list(found).index("serve") + 1 == list(found).index("improve")


def test_improve_failed_says_so(run):
    _edit_summary(run, "improve", {"status": "failed", "error": "no correction"})
    shutil.rmtree(run / "improve")
    improve = sections_of(build_report(run))["improve"]
    assert "stage failed: no correction" in improve and "Test scores" not in improve


def test_an_attention_figure_named_otherwise_is_still_shown(run):
    from PIL import Image

    Image.new("RGB", (60, 40), "red").save(run / "explain/attention/head_importance.png")
    explain = sections_of(build_report(run))["explain"]
    assert 'alt="head_importance"' in explain and "could not be drawn" not in explain
