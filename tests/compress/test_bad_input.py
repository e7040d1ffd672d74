"""Bad compress input fails clearly, naming the step and field, before any work where it can."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_bert, trained_tokenizer

from lmforge.compress.artifact import artifact_format
from lmforge.compress.config import CompressConfig
from lmforge.compress.methods import StepRun, load_methods
from lmforge.compress.stage import check_steps
from lmforge.core.errors import LmforgeError, RecipeError
from lmforge.core.manifest import Manifest, write_manifest
from lmforge.recipe import parse_recipe

pytestmark = pytest.mark.usefixtures("one_thread")
LABELS = ["a", "b"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, en_texts) -> Path:
    path = tmp_path_factory.mktemp("src") / "model"
    trained_tokenizer(en_texts[:50], vocab_size=500).save_pretrained(path)
    tiny_bert(vocab_size=500, num_labels=2).save_pretrained(path)
    info = {"labels": LABELS, "multi_label": False}
    write_manifest(path, Manifest(kind="full", task="classification", info=info, max_length=32))
    return path


def step_run(model_dir: Path, tmp_path: Path, **step) -> StepRun:
    cfg = CompressConfig(steps=[step])

    def no_data():
        raise AssertionError("the step started work before rejecting its input")

    out = tmp_path / "out"
    out.mkdir()
    return StepRun(cfg.steps[0], 0, artifact_format(model_dir), out, "compress/x", no_data, None)


def recipe(steps: list[dict], task: str = "classification") -> dict:
    return {
        "name": "t",
        "data": {"sources": [{"builtin": "bbc-news"}]},
        "finetune": {"task": task, "model": {"path": "minilm-l6"}},
        "compress": {"steps": steps},
    }


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_sparsity_outside_0_1_is_a_recipe_error(value):
    with pytest.raises(
        RecipeError, match=r"compress\.steps\.0\.prune\.sparsity: must be in \[0, 1\)"
    ):
        parse_recipe(recipe([{"method": "prune", "sparsity": value}]))


def test_unsupported_module_type_is_a_recipe_error():
    with pytest.raises(RecipeError, match=r"steps\.0\.quantize: modules: \['Conv2d'\]"):
        parse_recipe(recipe([{"method": "quantize", "engine": "torch", "modules": ["Conv2d"]}]))


def test_a_task_distillation_does_not_support_fails_at_validation():
    with pytest.raises(RecipeError, match=r"compress\.steps\.0 \(distill\)\.method.*extractive-qa"):
        parse_recipe(recipe([{"method": "distill"}], task="extractive-qa"))


def test_methods_check_task_and_input_format_before_work():
    cfg = CompressConfig(steps=[{"method": "export", "format": "gguf"}])
    with pytest.raises(LmforgeError, match=r"steps\.0 \(export\)\.format: GGUF .*causal"):
        check_steps(cfg, "classification", "transformers")
    cfg = CompressConfig(steps=[{"method": "export"}, {"method": "quantize", "engine": "torch"}])
    with pytest.raises(LmforgeError, match=r"steps\.1 \(quantize\)\.input: .* its input is onnx"):
        check_steps(cfg, "classification", "transformers")
    cfg = CompressConfig(steps=[{"method": "prune", "sparsity": 0.2}])
    with pytest.raises(LmforgeError, match=r"steps\.0 \(prune\)\.method: .* not 'extractive-qa'"):
        check_steps(cfg, "extractive-qa", "transformers")


def test_a_student_larger_than_its_teacher_is_refused_before_training(model_dir, tmp_path):
    run = step_run(model_dir, tmp_path, method="distill", student="bert-small")
    with pytest.raises(LmforgeError, match=r"compress\.steps\.0 \(distill\)\.student: .* smaller"):
        load_methods().get("distill").run(run)


def test_an_export_beyond_tolerance_is_an_error(model_dir, tmp_path):
    run = step_run(model_dir, tmp_path, method="export", atol=1e-30)
    with pytest.raises(LmforgeError, match=r"compress\.steps\.0 \(export\)\.atol: .* differ"):
        load_methods().get("export").run(run)
