"""The stage list is the one source of truth: recipe sections, checks, --only and CLI agree."""

from __future__ import annotations

import json
import typing

import pytest
import typer
from helpers import E2E_OVERRIDES

from lmforge.cli import app
from lmforge.core.errors import RecipeError
from lmforge.recipe import Recipe, parse_recipe
from lmforge.runner import parse_only
from lmforge.stages import AVAILABLE_STAGES, PLANNED_STAGES, STAGE_LIST, STAGES


def _section_type(name: str) -> type:
    args = typing.get_args(Recipe.model_fields[name].annotation)
    return next(a for a in args if a is not type(None))


def test_every_stage_is_a_recipe_section_of_its_config_type():
    sections = [f for f in Recipe.model_fields if f in STAGES]
    assert sections == list(AVAILABLE_STAGES)
    for spec in STAGE_LIST:
        assert _section_type(spec.name) is spec.config
        assert Recipe.model_fields[spec.name].description == spec.description


def test_needs_name_earlier_stages_only():
    seen: set[str] = set()
    for spec in STAGE_LIST:
        assert set(spec.needs) <= seen, spec.name
        seen.add(spec.name)
    assert not set(PLANNED_STAGES) & seen


def test_cli_has_a_command_per_stage():
    commands = set(typer.main.get_command(app).commands)
    for spec in STAGE_LIST:
        assert spec.name in commands  # evaluate's command is the standalone scorer


def test_recipe_stages_and_only_follow_the_list():
    recipe = parse_recipe({"name": "t", "data": {"sources": [{"builtin": "shakespeare"}]}})
    assert recipe.stages() == ["data"]
    assert parse_only("data", recipe) == ["data"]
    with pytest.raises(RecipeError, match="has no 'tokenizer' section"):
        parse_only("tokenizer", recipe)
    with pytest.raises(RecipeError, match="not available"):
        parse_only(PLANNED_STAGES[0], recipe)


def test_a_planned_section_is_rejected_by_name():
    with pytest.raises(RecipeError, match=f"{PLANNED_STAGES[0]}: the '{PLANNED_STAGES[0]}' stage"):
        parse_recipe({"name": "t", PLANNED_STAGES[0]: {}})


def test_cross_section_checks_come_from_the_specs():
    with pytest.raises(RecipeError, match="pretrain: needs a data section"):
        parse_recipe({"name": "t", "pretrain": {}})
    with pytest.raises(RecipeError, match="evaluate: needs a finetune section"):
        parse_recipe({"name": "t", "evaluate": {}})


# ---------------------------------------------------------------- the stage contract
# One tiny run through every stage of the list (sentiment-zh has them all but evaluate, which
# is added): each stage runs, records its result, and a rerun with nothing changed skips it.
CONTRACT_OVERRIDES = [
    *E2E_OVERRIDES["sentiment-zh"],
    "evaluate={profile: false, max_examples: 8}",
    "compress={steps: [{method: quantize, scheme: bf16}], profile: false, max_examples: 8}",
    "explain={examples: 1, attribution: {steps: 4, aopc_k: 2, random_runs: 1}, "
    "attacks: {methods: [zh-char], max_examples: 2, candidates: 2}, "
    "tcav: {concepts: [{name: praise, builtin: praise-zh, target: pos}], layers: [layer.0], "
    "random_runs: 2, random_examples: 6, max_targets: 4}}",
]


@pytest.fixture(scope="module")
def contract_runs(tmp_path_factory):
    from lmforge.recipe import load_recipe
    from lmforge.runner import run_recipe

    recipe = load_recipe("sentiment-zh", CONTRACT_OVERRIDES)
    out = tmp_path_factory.mktemp("contract")
    first = run_recipe(recipe, out=out)
    second = run_recipe(recipe, out=out)
    return recipe, first, second


def test_the_contract_run_covers_every_stage(contract_runs):
    recipe, _, _ = contract_runs
    assert recipe.stages() == list(AVAILABLE_STAGES)  # a new stage joins CONTRACT_OVERRIDES


@pytest.mark.slow
@pytest.mark.parametrize("spec", STAGE_LIST, ids=lambda s: s.name)
def test_stage_contract(contract_runs, spec):
    _, first, second = contract_runs
    assert spec.name in first.ran
    entry = first.summary["stages"][spec.name]
    assert entry["status"] == "done" and entry["metrics"], entry
    for path in entry["artifacts"].values():
        assert (first.root / path).exists(), path
    state = json.loads((first.root / spec.name / "_stage.json").read_text(encoding="utf-8"))
    assert state["metrics"] == entry["metrics"]
    # the rerun reuses the stage and reports the same numbers
    assert spec.name in second.cached and spec.name not in second.ran
    assert second.summary["stages"][spec.name]["metrics"] == entry["metrics"]


@pytest.mark.parametrize("stage", ["evaluate", "compress", "explain"])
def test_a_stage_that_reads_the_fine_tuned_model_needs_one_saved(stage):
    raw = {
        "name": "t",
        "data": {"sources": [{"builtin": "bbc-news"}]},
        "finetune": {"method": "zero-shot"},
        stage: {"steps": [{"method": "quantize"}]} if stage == "compress" else {},
    }
    with pytest.raises(RecipeError, match=f"{stage}.model is 'finetune' but finetune.method"):
        parse_recipe(raw)
