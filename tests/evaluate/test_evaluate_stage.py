"""The evaluate stage and `lmforge evaluate`: a saved model scored from disk, plus its cost."""

import json

import pytest
import yaml
from helpers import classify_section, local_encoder, write_csv

from lmforge.cli import main
from lmforge.data.builtin import load_builtin

COST_KEYS = (
    "total_params",
    "trainable_params",
    "size_mb",
    "latency_ms_b1",
    "latency_ms_b32",
    "examples_per_s_b32",
    "peak_rss_mb",
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    docs = load_builtin("bbc-news", limit=120)
    base = local_encoder(tmp / "base", [d.text for d in docs[:100]])
    return base, write_csv(tmp / "train.csv", docs[:100]), write_csv(tmp / "test.csv", docs[100:])


def recipe(base, train, test, merge):
    return {
        "name": "ev",
        "finetune": classify_section(base, train, test, merge=merge),
        "evaluate": {"latency_repeats": 2},
    }


@pytest.mark.parametrize("merge", [True, False], ids=["merged", "adapter"])
def test_evaluate_stage_scores_the_saved_model_like_the_finetune(files, tmp_path, merge):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe(*files, merge)))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(out)]) == 0
    stages = json.loads((out / "summary.json").read_text())["stages"]
    ft, ev = stages["finetune"]["metrics"], stages["evaluate"]["metrics"]
    # reloaded from disk, the model predicts what the trained model in memory did
    assert ev["accuracy"] == pytest.approx(ft["accuracy"]) and ev["test_examples"] == 20
    assert ev["model"] == ("finetune/merged" if merge else "finetune/model")
    for key in COST_KEYS:
        assert ev[key] > 0, key
    for size in (1, 32):  # each latency was timed on a batch of that many real articles
        assert round(ev[f"examples_per_s_b{size}"] * ev[f"latency_ms_b{size}"] / 1000) == size
    if merge:  # a merged model trains nothing more: every parameter is its own
        assert ev["trainable_params"] == ev["total_params"]
    else:  # the adapter: what fine-tuning changed, and the base it needs
        assert ev["trainable_params"] == ft["trainable_params"] and ev["base_size_mb"] > 0
        assert ev["size_mb"] < ev["base_size_mb"]
    assert (out / "evaluate" / "confusion.png").exists()
    assert len((out / "evaluate" / "predictions.jsonl").read_text().splitlines()) == 20


def test_evaluate_command_on_a_model_directory(files, tmp_path, capsys):
    base, train, test = files
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe(base, train, test, True)))
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(run), "--only", "finetune"]) == 0
    capsys.readouterr()
    args = ["evaluate", str(run / "finetune" / "merged"), "--task", "classification"]
    args += ["--data", str(test), "--text-column", "body", "--label-column", "topic"]
    assert main([*args, "--max-length", "64", "--out", str(tmp_path / "ev"), "--no-profile"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "size_mb" in printed
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())["evaluate"]
    ft = json.loads((run / "summary.json").read_text())["stages"]["finetune"]["metrics"]
    assert summary["metrics"]["accuracy"] == pytest.approx(ft["accuracy"])
    # a wrong column is named, no traceback
    assert main([*args[:-1], "--text-column", "nope", "--label-column", "topic"]) != 0


def test_evaluate_needs_a_finetune_section_and_a_saved_model(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"name": "x", "evaluate": {}}))
    assert main(["validate", str(tmp_path / "r.yaml")]) == 1
    assert "evaluate: needs a finetune section" in capsys.readouterr().err
