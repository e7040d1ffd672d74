"""GGUF export of a Llama causal LM: the file reads back (gguf's reader, transformers' GGUF
loader) and gives the source model's logits."""

from __future__ import annotations

import pytest
from helpers import trained_tokenizer

from lmforge.compress.artifact import artifact_format
from lmforge.compress.config import CompressConfig
from lmforge.compress.methods import StepRun, load_methods
from lmforge.core.errors import LmforgeError
from lmforge.core.manifest import Manifest, write_manifest

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_llama_dir(path, texts, *, tied: bool, kv_heads: int = 2):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = trained_tokenizer(texts, kind="bpe", vocab_size=400)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    write_manifest(path, Manifest(kind="pretrained", objective="clm"))
    return path


def export(source, tmp_path, **step):
    cfg = CompressConfig(steps=[{"method": "export", "format": "gguf", **step}])
    out = tmp_path / "gguf"
    out.mkdir()
    run = StepRun(cfg.steps[0], 0, artifact_format(source), out, "compress/gguf", None, None)
    return load_methods().get("export").run(run)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_gguf_reads_back_with_the_same_logits(tmp_path, en_texts, tied):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = tiny_llama_dir(tmp_path / "src", en_texts[:60], tied=tied)
    art, facts = export(source, tmp_path)
    assert art.format == "gguf" and facts["max_abs_diff"] <= 1e-4
    reader = gguf.GGUFReader(art.path / "model.gguf")
    names = {t.name for t in reader.tensors}
    assert ("output.weight" in names) != tied and "blk.1.attn_k.weight" in names
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "llama"
    # plain transformers, no lmforge: the GGUF file alone gives the source's next tokens
    tokenizer = AutoTokenizer.from_pretrained(source)
    back = AutoModelForCausalLM.from_pretrained(art.path, gguf_file="model.gguf")
    ref = AutoModelForCausalLM.from_pretrained(source)
    ids = tokenizer("the government said on Tuesday", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(back(input_ids=ids).logits, ref(input_ids=ids).logits, atol=1e-4)


def test_gguf_refuses_what_it_cannot_write(tmp_path, en_texts):
    from helpers import local_encoder

    encoder = local_encoder(tmp_path / "bert", en_texts[:40])
    write_manifest(encoder, Manifest(kind="pretrained", objective="mlm"))
    with pytest.raises(LmforgeError, match=r"steps\.0 \(export\)\.format: GGUF .* Llama"):
        export(encoder, tmp_path)


@pytest.mark.slow
def test_the_stage_exports_this_runs_pretrained_llama_to_gguf(tmp_path):
    """pretrain-gpt-shakespeare with a llama-tiny, then compress: model pretrain -> GGUF."""
    import json

    from helpers import E2E_OVERRIDES

    from lmforge.recipe import load_recipe
    from lmforge.runner import run_recipe

    sets = [
        *E2E_OVERRIDES["pretrain-gpt-shakespeare"],
        "pretrain.model.preset=llama-tiny",
        "compress={model: pretrain, steps: [{method: export, format: gguf}]}",
    ]
    outcome = run_recipe(load_recipe("pretrain-gpt-shakespeare", sets), out=tmp_path)
    assert "compress" in outcome.ran
    pareto = json.loads((tmp_path / "compress" / "pareto.json").read_text())
    gguf = {p["name"]: p for p in pareto["unscored"]}["export"]
    assert gguf["step"]["max_abs_diff"] <= 1e-4 and gguf["params"] > 0
    manifest = json.loads((tmp_path / "compress" / "export" / "lmforge.json").read_text())
    assert manifest["settings"]["format"] == "gguf" and manifest["location"] == "compress/export"
