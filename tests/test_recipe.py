"""Recipe validation: every mistake is caught before work starts, naming the field."""

import pytest
import yaml

from lmforge.core.errors import RecipeError
from lmforge.recipe import (
    Recipe,
    apply_override,
    builtin_recipes,
    load_recipe,
    parse_recipe,
    resolved_yaml,
)


def base() -> dict:
    return {
        "name": "t",
        "data": {"sources": [{"builtin": "bbc-news"}]},
        "tokenizer": {"vocab_size": 500},
    }


def error_of(raw: dict, overrides=()) -> str:
    with pytest.raises(RecipeError) as e:
        parse_recipe(raw, "r.yaml", list(overrides))
    return str(e.value)


@pytest.mark.parametrize("name", sorted(builtin_recipes()))
def test_every_builtin_recipe_validates_and_has_a_description(name):
    recipe = load_recipe(name)
    assert recipe.name == name
    assert recipe.description
    assert recipe.stages()


def test_mistyped_key_names_path_and_suggests_closest():
    raw = base()
    raw["data"]["dedup"] = {"treshold": 0.9}
    msg = error_of(raw)
    assert "data.dedup.treshold: unknown key; did you mean 'threshold'?" in msg


def test_mistyped_top_level_and_list_item_keys():
    raw = base()
    raw["sed"] = 3
    raw["data"]["sources"][0]["limt"] = 3
    msg = error_of(raw)
    assert "sed: unknown key; did you mean 'seed'?" in msg
    assert "data.sources.0.limt: unknown key; did you mean 'limit'?" in msg
    assert "(2 errors)" in msg


def test_impossible_values_name_the_field():
    raw = base()
    raw["data"]["dedup"] = {"threshold": 1.5}
    assert "data.dedup.threshold: must be in (0, 1]" in error_of(raw)
    raw["data"]["dedup"] = {"num_perm": 128, "bands": 7}
    assert "bands (7) must divide num_perm (128)" in error_of(raw)
    raw = base()
    raw["data"]["split"] = {"val": 0.6, "test": 0.5}
    assert "data.split: val + test must be < 1" in error_of(raw)


def test_wrong_type_and_missing_field():
    raw = base()
    raw["seed"] = "abc"
    assert "seed: Input should be a valid integer" in error_of(raw)
    assert "name: required field is missing" in error_of({"seed": 1})
    assert "data.sources: required field is missing" in error_of({"name": "x", "data": {}})


def test_missing_file_and_unknown_dataset():
    raw = base()
    raw["data"]["sources"] = [{"path": "/nonexistent/corpus.txt"}]
    assert "data.sources.0.path: no such file or directory: /nonexistent/corpus.txt" in error_of(
        raw
    )
    raw["data"]["sources"] = [{"builtin": "bbc-new"}]
    assert "did you mean 'bbc-news'" in error_of(raw)
    raw["data"]["sources"] = [{"builtin": "bbc-news", "path": "."}]
    assert "exactly one of 'builtin' or 'path'" in error_of(raw)


def test_future_stage_and_bad_name_are_explained():
    from lmforge.stages import PLANNED_STAGES

    for planned in PLANNED_STAGES:  # reserved names, not yet stages
        raw = base()
        raw[planned] = {"method": "x"}
        assert f"{planned}: the '{planned}' stage is not available" in error_of(raw)
    raw = base()
    raw["name"] = "my run/1"
    assert "name: use letters, digits" in error_of(raw)


def test_overrides_set_values_by_path_with_yaml_types():
    raw = base()
    for assignment in [
        "seed=7",
        "data.sources.0.limit=20",
        "data.dedup.near=false",
        "tokenizer.kind=wordpiece",
    ]:
        apply_override(raw, assignment)
    r = Recipe.model_validate(raw)
    assert r.seed == 7 and r.data.sources[0].limit == 20 and r.data.dedup.near is False
    assert r.tokenizer.kind == "wordpiece"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("seed", "expects key.path=value"),
        ("data.sources.5.limit=1", "not an index"),
        ("seed.x=1", "is a value"),
    ],
)
def test_bad_overrides_are_clear_errors(assignment, message):
    raw = base()
    raw["seed"] = 1
    with pytest.raises(RecipeError, match=message):
        apply_override(raw, assignment)


def test_override_errors_are_validated_like_the_file():
    assert "data.dedup.threshold: must be in (0, 1]" in error_of(base(), ["data.dedup.threshold=0"])


def test_resolved_yaml_is_complete_and_reloads(tmp_path):
    r = parse_recipe(base())
    text = resolved_yaml(r)
    data = yaml.safe_load(text)
    assert data["seed"] == 0 and data["data"]["dedup"]["num_perm"] == 128  # defaults filled in
    assert {"lmforge", "torch", "transformers"} <= set(data["versions"])
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    assert load_recipe(path).data == r.data


def test_unknown_recipe_name_suggests_a_builtin():
    with pytest.raises(RecipeError, match="did you mean 'quickstart'"):
        load_recipe("quickstar")
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe("missing.yaml")


def test_invalid_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="YAML mapping"):
        load_recipe(bad)


def test_the_chinese_recipes_share_one_encoder_through_the_stage_cache():
    """Pretrain once, fine-tune many: pretrain-zh, sentiment-zh and ner-zh hash their data,
    tokenizer and pretrain stages alike, so whichever runs first builds the encoder for all."""
    from lmforge.runner import stage_hash

    def hashes(name: str) -> dict[str, str]:
        recipe, out = load_recipe(name), {}
        for stage in ("data", "tokenizer", "pretrain"):
            out[stage] = stage_hash(recipe, stage, out)
        return out

    assert hashes("pretrain-zh") == hashes("sentiment-zh") == hashes("ner-zh")
