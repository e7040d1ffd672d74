"""GGUF export of Llama and GPT-2 causal LMs in F32, F16, Q8_0 and Q4_0: the file reads back
(gguf's reader, transformers' GGUF loader) and gives the source model's logits."""

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


def tiny_gpt2_dir(path, texts, **config):
    """A gpt-tiny-shaped GPT-2 (tied embedding) whose MLP is not 4x wide: transformers' GGUF
    config mapping would lose that, the export's check must not."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = trained_tokenizer(texts, kind="bpe", vocab_size=400)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    fields = dict(n_layer=2, n_head=4, n_embd=32, n_inner=96, n_positions=64)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), **{**fields, **config}))
    model.save_pretrained(path)
    write_manifest(path, Manifest(kind="pretrained", objective="clm"))
    return path


# gguf_type -> (GGML type of the 2-D weights, bound on |diff| / max |logit|)
GPT2_TYPES = {
    "f32": ("F32", 1e-6),
    "f16": ("F16", 2e-3),
    "q8_0": ("Q8_0", 3e-2),
    "q4_0": ("Q4_0", 0.3),
}


@pytest.mark.parametrize("kind", list(GPT2_TYPES))
def test_gpt2_gguf_reads_back_in_plain_transformers(tmp_path, en_texts, kind):
    import gguf
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = tiny_gpt2_dir(tmp_path / "src", en_texts[:60])
    art, facts = export(source, tmp_path, gguf_type=kind)
    ggml, bound = GPT2_TYPES[kind]
    assert art.format == "gguf" and facts["file_type"] == kind.upper()
    reader = gguf.GGUFReader(art.path / "model.gguf")
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "gpt2"
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    # 2-D weights in the chosen type (Q4_0 keeps the embedding and output layer at Q8_0);
    # norms, biases and the position table stay F32
    assert types["blk.0.attn_qkv.weight"] == types["blk.1.ffn_down.weight"] == ggml
    outer = "Q8_0" if kind == "q4_0" else ggml
    assert types["token_embd.weight"] == types["output.weight"] == outer
    assert types["blk.0.attn_norm.bias"] == types["position_embd.weight"] == "F32"
    # plain transformers, no lmforge: config.json beside the file, weights from the GGUF
    tokenizer = AutoTokenizer.from_pretrained(source)
    back = AutoModelForCausalLM.from_pretrained(
        art.path, gguf_file="model.gguf", config=AutoConfig.from_pretrained(art.path)
    )
    ref = AutoModelForCausalLM.from_pretrained(source)
    ids = tokenizer("the government said on Tuesday that it", return_tensors="pt").input_ids
    with torch.no_grad():
        want, got = ref(input_ids=ids).logits, back(input_ids=ids).logits
    assert (want - got).abs().max() <= bound * want.abs().max()
    assert facts["rel_diff"] <= bound and facts["max_abs_diff"] > 0 or kind == "f32"


def test_quantized_gguf_stores_fewer_bits(tmp_path, en_texts):
    """A block weight takes 32 bits a weight in F32, 8.5 in Q8_0, 4.5 in Q4_0 (blocks of 32
    with an f16 scale), and the files shrink in that order."""
    import gguf

    source = tiny_gpt2_dir(tmp_path / "src", en_texts[:60], n_embd=64, n_inner=256)
    bits, sizes = {}, {}
    for kind in ("f32", "q8_0", "q4_0"):
        (tmp_path / kind).mkdir()
        art, _ = export(source, tmp_path / kind, gguf_type=kind)
        reader = gguf.GGUFReader(art.path / "model.gguf")
        up = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
        bits[kind] = 8 * int(up.n_bytes) / int(up.n_elements)
        sizes[kind] = (art.path / "model.gguf").stat().st_size
    assert bits == {"f32": 32.0, "q8_0": 8.5, "q4_0": 4.5}
    assert sizes["f32"] > 3 * sizes["q8_0"] and sizes["q8_0"] > sizes["q4_0"]


def test_llama_gguf_q8_0(tmp_path, en_texts):
    import gguf

    source = tiny_llama_dir(tmp_path / "src", en_texts[:60], tied=False)
    art, facts = export(source, tmp_path, gguf_type="q8_0")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(art.path / "model.gguf").tensors}
    assert types["blk.0.attn_q.weight"] == types["output.weight"] == "Q8_0"
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert facts["rel_diff"] <= 3e-2 and facts["top1_agreement"] >= 0.9


def test_load_compressed_reads_an_instruction_models_gguf(tmp_path, en_texts):
    """An instruction fine-tune's GGUF artefact loads through load_compressed (dequantized)
    like the other compress formats (the old code sent it to the torch int8 loader)."""
    import torch

    from lmforge.compress.artifact import load_compressed

    source = tiny_gpt2_dir(tmp_path / "src", en_texts[:40])
    write_manifest(source, Manifest(kind="full", task="instruction", max_length=64))
    art, _ = export(source, tmp_path, gguf_type="q8_0")
    model, tokenizer, task, _ = load_compressed(art.path)
    ref = load_compressed(source)[0]
    ids = tokenizer("the government said", return_tensors="pt").input_ids
    with torch.no_grad():
        want, got = ref(input_ids=ids).logits, model(input_ids=ids).logits
    assert task.name == "instruction" and type(model).__name__ == "GPT2LMHeadModel"
    assert 0 < (want - got).abs().max() <= 3e-2 * want.abs().max()


def test_gguf_refuses_what_it_cannot_write(tmp_path, en_texts):
    from helpers import local_encoder

    encoder = local_encoder(tmp_path / "bert", en_texts[:40])
    write_manifest(encoder, Manifest(kind="pretrained", objective="mlm"))
    with pytest.raises(LmforgeError, match=r"steps\.0 \(export\)\.format: GGUF .* Llama"):
        export(encoder, tmp_path)
    # a GPT-2 whose maths llama.cpp's gpt2 graph does not compute (ReLU MLP)
    relu = tiny_gpt2_dir(tmp_path / "relu", en_texts[:40], activation_function="relu")
    (tmp_path / "relu-out").mkdir()
    with pytest.raises(LmforgeError, match=r"format: llama.cpp's GPT-2 uses tanh GELU"):
        export(relu, tmp_path / "relu-out")


def test_gguf_type_belongs_to_gguf():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="gguf_type: applies to format: gguf only"):
        CompressConfig(steps=[{"method": "export", "format": "onnx", "gguf_type": "q8_0"}])


@pytest.mark.slow
def test_the_stage_exports_this_runs_pretrained_gpt2_to_q8_0_gguf(tmp_path):
    """pretrain-gpt-shakespeare (gpt-tiny, GPT-2 as the quickstart's), then compress: model
    pretrain -> Q8_0 GGUF, listed in pareto.json with its logit check."""
    import json

    from helpers import E2E_OVERRIDES

    from lmforge.recipe import load_recipe
    from lmforge.runner import run_recipe

    sets = [
        *E2E_OVERRIDES["pretrain-gpt-shakespeare"],
        "compress={model: pretrain, steps: [{method: export, format: gguf, gguf_type: q8_0}]}",
    ]
    outcome = run_recipe(load_recipe("pretrain-gpt-shakespeare", sets), out=tmp_path)
    assert "compress" in outcome.ran
    pareto = json.loads((tmp_path / "compress" / "pareto.json").read_text())
    gguf = {p["name"]: p for p in pareto["unscored"]}["export"]
    assert gguf["step"]["file_type"] == "Q8_0" and gguf["step"]["rel_diff"] <= 3e-2
    assert gguf["params"] > 0
    manifest = json.loads((tmp_path / "compress" / "export" / "lmforge.json").read_text())
    assert manifest["settings"]["format"] == "gguf" and manifest["location"] == "compress/export"
    assert manifest["settings"]["compress"][-1]["gguf_type"] == "q8_0"
