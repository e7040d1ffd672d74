"""The explain stage's work on a saved classifier, the recipe section and `lmforge explain`."""

from __future__ import annotations

import json

import pytest
from conftest import keyword_texts

from lmforge.core.errors import LmforgeError, RecipeError
from lmforge.data.document import Document
from lmforge.explain.config import ExplainConfig
from lmforge.explain.stage import explain_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_explain_model_writes_figures_and_numbers(keyword_clf, tmp_path):
    docs = [Document(text=t, label=lab) for t, lab in keyword_texts(9, seed=2)]
    cfg = ExplainConfig(
        examples=2,
        attribution={"steps": 8, "aopc_k": 3, "random_runs": 2},
        attacks={"methods": ["char"], "max_examples": 4, "candidates": 4},
    )
    metrics, artifacts = explain_model(keyword_clf, docs, cfg, tmp_path)
    for path in artifacts.values():
        assert (tmp_path / path).exists(), path
    assert len(list((tmp_path / "attention").glob("ex1_*.png"))) == 3
    assert {"aopc_ig", "aopc_attention", "aopc_random"} <= set(metrics)
    rows = [json.loads(x) for x in (tmp_path / "attacks.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and metrics["attacks"]["char"]["examples"] == 4


def test_unknown_labels_and_bad_sections_are_named(keyword_clf, tmp_path):
    from lmforge.recipe import parse_recipe

    with pytest.raises(LmforgeError, match=r"labels \['weather'\] are not among"):
        explain_model(keyword_clf, [Document(text="x", label="weather")], ExplainConfig(), tmp_path)
    with pytest.raises(RecipeError, match="unknown attack 'typo'"):
        parse_recipe({"name": "t", "explain": {"attacks": {"methods": ["typo"]}}})
    with pytest.raises(RecipeError, match="concepts"):
        parse_recipe({"name": "t", "explain": {"tcav": {"concepts": []}}})
    with pytest.raises(RecipeError, match="explain: needs a finetune section"):
        parse_recipe({"name": "t", "explain": {}})


def test_cli_explains_given_texts(keyword_model_dir, tmp_path, capsys):
    from lmforge.cli import main

    code = main(
        [
            "explain",
            str(keyword_model_dir),
            "--text",
            "the market rose",
            "--text",
            "a late goal in the match",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "summary.json").read_text())["explain"]
    assert summary["metrics"]["examples"] == 2
    assert (tmp_path / "attention.html").exists() and (tmp_path / "attributions.html").exists()
