"""The compress stage on a pretrain stage's causal LM with no finetune section: the GPT is
distilled into an every-other-layer student on the run's own corpus, the student is exported to
GGUF, and every artefact is scored by held-out perplexity (lower is better on the Pareto front).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from lmforge.cli import main
from lmforge.core.errors import RecipeError
from lmforge.recipe import parse_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

TEACHER = {"layers": 2, "heads": 2, "hidden": 32, "intermediate": 64}
PRESET = {"clm": "gpt-tiny", "mlm": "bert-tiny"}


def recipe(objective: str = "clm", steps: list | None = None) -> dict:
    return {
        "name": "lm",
        "seed": 0,
        "data": {
            "sources": [{"builtin": "bbc-news", "limit": 40}],
            "split": {"val": 0.1, "test": 0.1},
        },
        "tokenizer": {"kind": "bpe", "vocab_size": 300},
        "pretrain": {
            "model": {**TEACHER, "context": 32, "preset": PRESET[objective]},
            "objective": objective,
            "block_size": 32,
            "batch_size": 16,
            "max_steps": 200,
            "lr": 5e-3,
            "warmup_steps": 10,
            "eval_every": 200,
            "eval_batches": 1,
            "checkpoint_every": 200,
            "tensorboard": False,
        },
        "compress": {
            "model": "pretrain",
            "steps": steps
            or [
                {"method": "distill", "epochs": 1, "lr": 3e-3, "batch_size": 16},
                {"method": "export", "format": "gguf"},
            ],
            "max_examples": 24,
            "profile": False,
        },
    }


def test_distil_a_pretrained_gpt_on_its_corpus(tmp_path):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe()))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(out)]) == 0
    pareto = json.loads((out / "compress" / "pareto.json").read_text())
    points = {p["name"]: p for p in pareto["artefacts"]}
    assert list(points) == ["source", "distill", "export"] and pareto["test_examples"] == 24
    for p in points.values():
        assert p["quality_metric"] == "perplexity" and p["quality"] == p["perplexity"] > 1
    step = points["distill"]["step"]
    # distillation taught the student: closer to its teacher, better on held-out text
    assert step["kl_to_teacher_after"] < step["kl_to_teacher_before"]
    assert points["distill"]["perplexity"] < step["student_perplexity_before"]
    assert points["distill"]["params"] < points["source"]["params"]
    # the GGUF file of the student (f32) predicts as the student does
    assert points["export"]["perplexity"] == pytest.approx(points["distill"]["perplexity"], 1e-3)
    assert (out / "compress" / "tradeoff.png").exists()
    # the student loads in plain transformers, without lmforge
    code = (
        "import sys; sys.modules['lmforge'] = None\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"path = {str(out / 'compress' / 'distill')!r}\n"
        "model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)\n"
        "print(model.config.n_layer, model(**tok('the market', return_tensors='pt')).logits.shape[-1])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    layers, vocab = done.stdout.split()
    teacher = json.loads((out / "pretrain" / "model" / "config.json").read_text())
    assert int(layers) == 1 and int(vocab) == teacher["vocab_size"]
    served_in_place_only_when_perplexity_holds(out, pareto)


def served_in_place_only_when_perplexity_holds(out, pareto):
    """`lmforge serve RUN` serves the student (still a headless pretrained LM) in place of
    pretrain/model only while its perplexity is no worse: a rise is a loss of quality."""
    from lmforge.core.manifest import read_manifest
    from lmforge.serve.loader import compressed_choice

    assert read_manifest(out / "compress" / "distill").kind == "pretrained"
    source = pareto["artefacts"][0]["quality"]
    for change, served in ((-0.5, "compress/distill"), (5.0, None)):  # perplexity fell / rose
        for p in pareto["artefacts"][1:]:
            p["quality"], p["quality_delta"] = source + change, change
        (out / "compress" / "pareto.json").write_text(json.dumps(pareto))
        assert compressed_choice(out, "pretrain/model")[0] == served


def test_pareto_front_prefers_lower_perplexity():
    from lmforge.compress.score import pareto_front

    same = {"quality_metric": "perplexity", "size_mb": 1.0, "latency_ms_p50_b1": 5.0}
    points = [{"name": "good", "quality": 12.0, **same}, {"name": "bad", "quality": 30.0, **same}]
    assert pareto_front(points) == ["good"]
    accuracy = [
        {**p, "quality_metric": "accuracy", "quality": q}
        for p, q in zip(points, (0.6, 0.9), strict=True)
    ]
    assert pareto_front(accuracy) == ["bad"]  # higher accuracy wins


def test_distilling_a_masked_lm_is_refused_before_work():
    raw = recipe("mlm", [{"method": "distill"}])
    with pytest.raises(RecipeError, match=r"compress\.model: .*causal LM.*not 'mlm'"):
        parse_recipe(raw)


def test_pruning_a_pretrained_lm_without_finetune_is_refused():
    raw = recipe(steps=[{"method": "prune", "sparsity": 0.5}])
    with pytest.raises(RecipeError, match=r"compress\.steps\.0 \(prune\)\.method: .*distils"):
        parse_recipe(raw)


def test_a_masked_lm_directory_is_refused_naming_the_model(tmp_path):
    from lmforge.compress.artifact import Compressed
    from lmforge.compress.config import CompressConfig
    from lmforge.compress.stage import check_causal_lm
    from lmforge.core.errors import LmforgeError
    from lmforge.core.manifest import Manifest

    cfg = CompressConfig(steps=[{"method": "distill"}])
    source = Compressed(tmp_path, "transformers", Manifest(kind="pretrained", objective="mlm"))
    with pytest.raises(LmforgeError, match=r"compress\.model: .*objective 'mlm'"):
        check_causal_lm(cfg, source)


def test_a_preset_student_of_a_pretrained_lm_is_a_decoder_on_the_teachers_vocabulary(
    tmp_path, en_texts
):
    from helpers import trained_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    from lmforge.compress.artifact import Compressed
    from lmforge.compress.config import CompressConfig
    from lmforge.compress.distill import make_student
    from lmforge.compress.methods import StepRun
    from lmforge.core.errors import LmforgeError
    from lmforge.core.manifest import Manifest

    tokenizer = trained_tokenizer(en_texts[:40], kind="bpe", vocab_size=300)
    teacher = GPT2LMHeadModel(GPT2Config(vocab_size=320, n_layer=2, n_embd=32, n_head=2))
    source = Compressed(tmp_path, "transformers", Manifest(kind="pretrained", objective="clm"))

    def student(name):
        cfg = CompressConfig(model="pretrain", steps=[{"method": "distill", "student": name}])
        run = StepRun(cfg.steps[0], 0, source, tmp_path, "compress/distill", None, None)
        return make_student(run, teacher, tokenizer, None, None)

    llama = student("llama-tiny")
    assert llama.config.model_type == "llama" and llama.config.vocab_size == 320
    with pytest.raises(
        LmforgeError, match=r"steps\.0 \(distill\)\.student: 'bert-tiny' .*gpt-tiny"
    ):
        student("bert-tiny")
