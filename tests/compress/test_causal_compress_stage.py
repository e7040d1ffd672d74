"""The compress stage on a causal LM (the instruction task): a distilled student (with
hidden-state matching), a head-pruned and a magnitude-pruned model are made, scored like the
source, and load in plain transformers."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from helpers import instruction_section, trained_tokenizer

from lmforge.cli import main
from lmforge.data.builtin import load_builtin

pytestmark = pytest.mark.usefixtures("one_thread")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_distil_and_prune_heads_of_an_instruction_model(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    pairs = load_builtin("chit-chat-en", limit=300)
    tok = trained_tokenizer(
        [d.text + "\n" + d.label for d in pairs],
        "bpe",
        600,
        256,
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tok.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    base = tmp_path / "base"
    LlamaForCausalLM(config).save_pretrained(base)
    tok.save_pretrained(base)
    steps = [
        {"method": "distill", "epochs": 2, "hidden_weight": 0.5, "hidden_loss": "cosine"},
        {"method": "prune", "kind": "heads", "sparsity": 0.5, "input": "source"},
        {"method": "prune", "sparsity": 0.3, "input": "source", "name": "sparse"},
    ]
    section = instruction_section(
        base, tmp_path, pairs[:48], pairs[280:286], method="full", lr=1e-3,
        generation_max_tokens=4,
    )  # fmt: skip
    recipe = {
        "name": "chat",
        "finetune": section,
        "compress": {"steps": steps, "profile": False},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(out)]) == 0
    pareto = json.loads((out / "compress" / "pareto.json").read_text())
    points = {p["name"]: p for p in pareto["artefacts"]}
    assert list(points) == ["source", "distill", "prune", "sparse"]
    for p in points.values():
        assert p["quality_metric"] == "chrf" and "perplexity" in p
    history = points["distill"]["step"]["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert points["distill"]["params"] < points["source"]["params"]
    assert points["prune"]["step"]["heads_after"] == 2
    assert points["prune"]["params"] < points["source"]["params"]
    student = AutoModelForCausalLM.from_pretrained(out / "compress" / "distill")
    pruned = AutoModelForCausalLM.from_pretrained(out / "compress" / "prune")
    assert student.config.num_hidden_layers == 2
    assert pruned.config.num_attention_heads == 2
    assert pruned.model.layers[0].self_attn.o_proj.in_features == 16
    assert points["sparse"]["step"]["sparsity"] == pytest.approx(0.3, abs=0.01)
