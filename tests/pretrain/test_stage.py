"""The pretrain stage end to end: every objective, exact resume after kill -9, DDP and FSDP."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pretrain_tiny import TINY_BERT, base_recipe, pretrain_section, write_recipe
from safetensors.torch import load_file

from lmforge.cli import main


def history(run):
    return [
        json.loads(line) for line in (run / "pretrain" / "history.jsonl").read_text().splitlines()
    ]


def pretrain_metrics(run):
    return json.loads((run / "summary.json").read_text())["stages"]["pretrain"]


def test_clm_trains_saves_and_generates(run_dir, tmp_path, capsys):
    run = run_dir("bpe")
    recipe = write_recipe(
        tmp_path / "r.yaml", {**base_recipe("bpe"), "pretrain": pretrain_section()}
    )
    assert main(["run", str(recipe), "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())["stages"]
    assert summary["data"]["cached"] and summary["tokenizer"]["cached"]  # reused, not redone
    entry = summary["pretrain"]
    assert entry["status"] == "done"
    m = entry["metrics"]
    assert m["steps"] == 12 and m["val_loss"] < 6.3  # below log(500): it learned something
    assert 0 < m["mfu"] < 1 and m["tokens_per_second"] > 0
    assert 4 < m["unigram_val_loss"] < math.log(500)  # the context-free reference
    steps = history(run)
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert (run / "pretrain" / "loss.png").stat().st_size > 1000
    ckpts = sorted(p.name for p in (run / "pretrain" / "checkpoints").iterdir())
    assert ckpts == ["step-00000009", "step-00000012"]  # keep_checkpoints=2
    assert not (run / ".pretrain.partial").exists()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = run / "pretrain" / "model"
    assert (model_dir / "model.safetensors").exists()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    out = model.generate(**tok("The", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > 1
    capsys.readouterr()
    code = main(
        ["generate", str(model_dir), "--prompt", "Shares", "--max-new-tokens", "8", "--seed", "1"]
    )
    assert code == 0 and capsys.readouterr().out.startswith("Shares")


@pytest.mark.parametrize(
    ("objective", "preset"),
    [("mlm", "bert-tiny"), ("mlm+nsp", "bert-tiny"), ("mlm", "modernbert-tiny")],
)
def test_masked_objectives_save_models_plain_transformers_loads(
    run_dir, tmp_path, objective, preset
):
    from transformers import AutoModelForMaskedLM, BertForPreTraining

    run = run_dir("wordpiece")
    section = pretrain_section(
        model={**TINY_BERT, "preset": preset},
        objective=objective,
        whole_word_mask=True,
        block_size=48,
    )
    recipe = write_recipe(tmp_path / "r.yaml", {**base_recipe("wordpiece"), "pretrain": section})
    assert main(["run", str(recipe), "--out", str(run)]) == 0
    m = pretrain_metrics(run)["metrics"]
    assert 0 <= m["val_mlm_accuracy"] <= 1
    if objective == "mlm+nsp":
        assert 0 <= m["val_nsp_accuracy"] <= 1
        model = BertForPreTraining.from_pretrained(run / "pretrain" / "model")
    else:
        model = AutoModelForMaskedLM.from_pretrained(run / "pretrain" / "model")
    assert model.config.vocab_size >= 500
    assert model.config.model_type == preset.removesuffix("-tiny")
    if preset == "modernbert-tiny":  # trained with the MLM head on masked positions only ...
        from lmforge.models import flops_per_token

        assert m["flops_per_token"] == flops_per_token(model.config, 48, predicted=0.15)
        assert not model.config.sparse_prediction  # ... and saved to return dense logits


def test_llama_preset_and_lamb_with_grad_accum(run_dir, tmp_path):
    run = run_dir("bpe")
    model = {
        "preset": "llama-tiny",
        "layers": 1,
        "heads": 2,
        "hidden": 32,
        "intermediate": 64,
        "context": 64,
    }
    section = pretrain_section(
        model=model, optimizer="lamb", grad_accum=2, precision="bf16", lr=0.01
    )
    recipe = write_recipe(tmp_path / "r.yaml", {**base_recipe("bpe"), "pretrain": section})
    assert main(["run", str(recipe), "--out", str(run)]) == 0
    m = pretrain_metrics(run)["metrics"]
    assert m["tokens"] == 12 * 2 * 4 * 32
    assert m["val_loss"] < 6.3


def _weights(run):
    return load_file(str(run / "pretrain" / "model" / "model.safetensors"))


def _lmforge(*args, **kw):
    env = {**os.environ, "LMFORGE_NO_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, "-m", "lmforge", *args], env=env, **kw)


def _kill_9_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts workers in new sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo = [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _kill_9_after_checkpoint(proc: subprocess.Popen, run: Path, step: int) -> None:
    """Wait for the run's checkpoint of ``step``, then kill -9 it (and torchrun's workers)."""
    ckpt = run / ".pretrain.partial" / "checkpoints" / f"step-{step:08d}" / "trainer_state.json"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    _kill_9_tree(proc.pid)
    proc.wait()
    assert ckpt.exists(), f"the run never reached its checkpoint of step {step}"


def test_kill_9_then_resume_matches_an_uninterrupted_run(run_dir, tmp_path):
    section = pretrain_section(max_steps=40, checkpoint_every=5, eval_every=20)
    recipe = write_recipe(tmp_path / "r.yaml", {**base_recipe("bpe"), "pretrain": section})
    straight, crashed = run_dir("bpe", "straight"), run_dir("bpe", "crashed")
    assert main(["run", str(recipe), "--out", str(straight)]) == 0

    proc = _lmforge("run", str(recipe), "--out", str(crashed), stderr=subprocess.DEVNULL)
    _kill_9_after_checkpoint(proc, crashed, 10)
    assert not (crashed / "pretrain").exists()  # nothing that looks finished
    summary = json.loads((crashed / "summary.json").read_text())["stages"]
    assert "pretrain" not in summary or summary["pretrain"]["status"] != "done"

    assert main(["run", str(recipe), "--out", str(crashed), "--resume"]) == 0
    entry = pretrain_metrics(crashed)
    assert entry["metrics"]["resumed_from_step"] >= 10
    a, b = _weights(straight), _weights(crashed)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    full, resumed = history(straight), history(crashed)
    assert [r["step"] for r in resumed] == list(range(1, 41))
    assert resumed[-1]["loss"] == pytest.approx(full[-1]["loss"], abs=1e-6)


def test_resume_with_a_changed_recipe_names_the_change(run_dir, tmp_path, capsys):
    run = run_dir("bpe")
    partial = run / ".pretrain.partial"
    partial.mkdir()
    (partial / "_inputs.json").write_text(
        json.dumps({"hash": "old", "config": {"pretrain": {**pretrain_section(lr=0.5)}, "seed": 0}})
    )
    recipe = write_recipe(
        tmp_path / "r.yaml", {**base_recipe("bpe"), "pretrain": pretrain_section()}
    )
    code = main(["run", str(recipe), "--out", str(run), "--resume"])
    err = capsys.readouterr().err
    assert (
        code == 1
        and "cannot --resume stage 'pretrain'" in err
        and "pretrain.lr: 0.5 -> 0.001" in err
    )


def test_bad_sizes_are_rejected_before_training(run_dir, tmp_path, capsys):
    run = run_dir("bpe")
    too_long = pretrain_section(block_size=128)  # the tiny model's context is 64
    recipe = write_recipe(tmp_path / "r.yaml", {**base_recipe("bpe"), "pretrain": too_long})
    assert main(["run", str(recipe), "--out", str(run)]) == 1
    assert "pretrain.block_size (128) exceeds the model's context (64)" in capsys.readouterr().err
    wrong = pretrain_section(model=TINY_BERT, objective="clm")
    recipe = write_recipe(tmp_path / "r2.yaml", {**base_recipe("bpe"), "pretrain": wrong})
    assert main(["validate", str(recipe)]) == 1
    assert (
        "pretrain: objective 'clm' needs a decoder; 'bert-tiny' is an encoder"
        in capsys.readouterr().err
    )
    nsp = pretrain_section(model={**TINY_BERT, "preset": "modernbert-tiny"}, objective="mlm+nsp")
    recipe = write_recipe(tmp_path / "r3.yaml", {**base_recipe("bpe"), "pretrain": nsp})
    assert main(["validate", str(recipe)]) == 1
    assert "'modernbert-tiny' trains with objective 'mlm' only" in capsys.readouterr().err


def _torchrun(*args: str, nproc: int = 2, **kw) -> subprocess.Popen:
    env = {**os.environ, "LMFORGE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", str(nproc), "-m", "lmforge", *args]
    return subprocess.Popen(cmd, env=env, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_match_the_single_process_run(run_dir, tmp_path, mode):
    section = pretrain_section(
        batch_size=4, grad_accum=2, max_steps=8, eval_every=4, checkpoint_every=4, distributed=mode
    )
    recipe = write_recipe(tmp_path / "r.yaml", {**base_recipe("bpe"), "pretrain": section})
    single, parallel = run_dir("bpe", "single"), run_dir("bpe", mode)
    assert main(["run", str(recipe), "--out", str(single)]) == 0
    proc = _torchrun("run", str(recipe), "--out", str(parallel), stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    m = pretrain_metrics(parallel)["metrics"]
    assert m["processes"] == 2
    one, two = history(single), history(parallel)
    assert [r["step"] for r in two] == list(range(1, 9))
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    w1, w2 = _weights(single), _weights(parallel)  # FSDP: gathered from the shards
    assert w1.keys() == w2.keys()
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4
    assert torch.isfinite(torch.tensor(m["val_loss"]))


@pytest.mark.slow
def test_fsdp_kill_9_then_resume_matches_an_uninterrupted_run(run_dir, tmp_path):
    section = pretrain_section(
        batch_size=8, max_steps=40, eval_every=20, checkpoint_every=4, distributed="fsdp"
    )
    recipe = write_recipe(tmp_path / "r.yaml", {**base_recipe("bpe"), "pretrain": section})
    single, crashed = run_dir("bpe", "single"), run_dir("bpe", "crashed")
    assert main(["run", str(recipe), "--out", str(single)]) == 0

    proc = _torchrun("run", str(recipe), "--out", str(crashed), stderr=subprocess.DEVNULL)
    _kill_9_after_checkpoint(proc, crashed, 8)
    assert not (crashed / "pretrain").exists()

    proc = _torchrun(
        "run", str(recipe), "--out", str(crashed), "--resume", stderr=subprocess.PIPE, text=True
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert pretrain_metrics(crashed)["metrics"]["resumed_from_step"] >= 8
    w1, w2 = _weights(single), _weights(crashed)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4
    resumed = history(crashed)
    assert [r["step"] for r in resumed] == list(range(1, 41))
    assert resumed[-1]["loss"] == pytest.approx(history(single)[-1]["loss"], rel=1e-4)


def test_continue_pretraining_a_builtin_encoder(run_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    run = run_dir("bpe")
    raw = base_recipe("bpe")
    del raw["tokenizer"]  # the model brings its own
    section = pretrain_section(
        model={"path": "minilm-l6"},
        objective="mlm",
        max_steps=2,
        warmup_steps=1,
        batch_size=2,
        eval_every=2,
        checkpoint_every=2,
    )
    recipe = write_recipe(tmp_path / "r.yaml", {**raw, "pretrain": section})
    assert main(["run", str(recipe), "--out", str(run)]) == 0
    m = pretrain_metrics(run)["metrics"]
    assert m["params"] > 22_000_000 and m["steps"] == 2
    model_dir = run / "pretrain" / "model"
    assert AutoTokenizer.from_pretrained(model_dir).vocab_size == 30522
    assert AutoModelForMaskedLM.from_pretrained(model_dir).config.num_hidden_layers == 6
