"""Weight-only int8 / int4: the file really stores int8 / packed int4 Linear weights (dtypes,
file size), a trained classifier keeps its predictions, and the artefact reloads through
``load_compressed`` (what serve uses) and through plain safetensors + transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_bert, trained_tokenizer

from lmforge.compress.artifact import artifact_format, load_compressed
from lmforge.compress.config import CompressConfig
from lmforge.compress.methods import StepRun, load_methods
from lmforge.compress.weightonly import WEIGHT_ONLY_FILE, dequantize_weight, quantize_weight
from lmforge.core.errors import LmforgeError
from lmforge.core.manifest import Manifest, write_manifest

pytestmark = pytest.mark.usefixtures("one_thread")


def topic_batch(n: int, seed: int) -> tuple[dict, object]:
    """Token ids whose label (0-4) is the id range half of the tokens come from: learnable
    in a few steps, so the fixture model is accurate and quantization error shows."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 5, (n,), generator=g)
    ids = torch.randint(5, 800, (n, 32), generator=g)
    topic = 100 + 100 * y[:, None] + torch.randint(0, 100, (n, 32), generator=g)
    ids = torch.where(torch.rand(n, 32, generator=g) < 0.5, topic, ids)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, y


@pytest.fixture(scope="module")
def trained(tmp_path_factory, en_texts):
    """A 2-layer BERT 64 wide trained for 90 steps on 480 topic_batch examples, and 200
    held-out ones."""
    import torch

    threads = torch.get_num_threads()  # a module fixture runs before the one_thread fixture
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("wo") / "model"
    trained_tokenizer([t[:300] for t in en_texts[:40]], vocab_size=800).save_pretrained(path)
    model = tiny_bert(vocab_size=800, num_labels=5, hidden_size=64, intermediate_size=128)
    (x, y), test = topic_batch(480, seed=0), topic_batch(200, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(3):
        for idx in torch.randperm(480, generator=g).split(16):
            loss = model(**{k: v[idx] for k, v in x.items()}, labels=y[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval().save_pretrained(path)
    info = {"labels": list("abcde"), "multi_label": False}
    write_manifest(path, Manifest(kind="full", task="classification", info=info, max_length=32))
    torch.set_num_threads(threads)
    return path, test


def quantize(source: Path, out: Path, **step) -> tuple:
    cfg = CompressConfig(steps=[{"method": "quantize", **step}])
    out.mkdir()
    run = StepRun(cfg.steps[0], 0, artifact_format(source), out, "compress/q", None, None)
    return load_methods().get("quantize").run(run)


def logits(model, batch):
    import torch

    with torch.inference_mode():
        return model(**batch).logits


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_dequantize_round_trip(bits):
    import torch

    torch.manual_seed(0)
    w = torch.randn(24, 64)
    qdata, scale = quantize_weight(w, bits, group_size=16)
    if bits == 8:
        assert qdata.dtype == torch.int8 and qdata.shape == (24, 64) and scale.shape == (24, 1)
    else:  # two weights a byte, a scale per 16 inputs
        assert qdata.dtype == torch.uint8 and qdata.shape == (24, 32) and scale.shape == (24, 4)
    back = dequantize_weight(qdata, scale)
    # round to nearest: within half a step of the grid; int4's grid is -8..7 steps with the
    # group's peak at -8, so a weight of the opposite sign as large is clamped: one step
    step = scale.abs().repeat_interleave(64 // scale.shape[1], dim=1)
    assert ((back - w).abs() <= (step / 2 if bits == 8 else step) + 1e-6).all()
    # weights already on the grid come back exactly (packing order, sign, offset)
    assert torch.equal(dequantize_weight(*quantize_weight(back, bits, 16)), back)


@pytest.mark.parametrize(
    ("scheme", "dtype", "ratio", "agree"),
    [("int8-weight", "I8", 3.5, 0.95), ("int4-weight", "U8", 6.0, 0.85)],
)
def test_weight_only_classifier(trained, tmp_path, scheme, dtype, ratio, agree):
    import torch
    from safetensors import safe_open

    source, (batch, y) = trained
    art, facts = quantize(source, tmp_path / "q", scheme=scheme)
    assert (
        art.format == "weight-only" and facts["quantized_linears"] == 14
    )  # 6 a layer, pooler, head
    # the Linear weights are stored as int8 / packed int4: no fp32 copy of them in the file
    with safe_open(art.path / WEIGHT_ONLY_FILE, "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118
        assert f.metadata()["bits"] == scheme[3]
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert dtypes[key + ".qdata"] == dtype and key not in dtypes
    assert facts["linear_weight_bytes_fp32"] / facts["linear_weight_bytes"] > ratio
    fp32_file = (source / "model.safetensors").stat().st_size
    assert (art.path / WEIGHT_ONLY_FILE).stat().st_size < fp32_file
    # load_compressed (serve and the scorer use it) gives a model that predicts like fp32
    model, _, task, _ = load_compressed(art.path)
    ref = load_compressed(source)[0]
    want, got = logits(ref, batch), logits(model, batch)
    assert task.name == "classification" and not torch.equal(want, got)
    agreement = (want.argmax(-1) == got.argmax(-1)).float().mean().item()
    accuracy = [(out.argmax(-1) == y).float().mean().item() for out in (want, got)]
    assert accuracy[0] >= 0.8, "the fixture model did not learn"
    assert agreement >= agree and accuracy[1] >= accuracy[0] - (1 - agree)


def test_weight_only_loads_without_lmforge(trained, tmp_path):
    """The README's recipe: safetensors + transformers, nothing from lmforge."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    source, (batch, _) = trained
    art, _ = quantize(source, tmp_path / "q", scheme="int4-weight", group_size=32)
    tensors = load_file(art.path / "model_weight_only.safetensors")
    state = {k: v for k, v in tensors.items() if not k.endswith((".qdata", ".scale"))}
    for key in [k for k in tensors if k.endswith(".qdata")]:
        name, q, scale = key.removesuffix(".qdata"), tensors[key], tensors[key[:-5] + "scale"]
        if q.dtype == torch.uint8:  # int4: two a byte, low nibble first, stored as q + 8
            q = torch.stack([q & 15, q >> 4], -1).reshape(q.shape[0], -1).float() - 8
        w = q.float().reshape(q.shape[0], scale.shape[1], -1) * scale[..., None]
        state[name] = w.reshape(q.shape[0], -1)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(art.path))
    model.load_state_dict(state)
    lm = load_compressed(art.path)[0]
    assert torch.equal(logits(model.eval(), batch), logits(lm, batch))


def test_weight_only_refuses_groups_that_do_not_divide(trained, tmp_path):
    source, _ = trained
    with pytest.raises(LmforgeError, match=r"steps\.0 \(quantize\)\.group_size: .*groups of 48"):
        quantize(source, tmp_path / "q", scheme="int4-weight", group_size=48)


def test_weight_only_is_a_terminal_format():
    """A later step that reads transformers models is refused before any work."""
    from lmforge.compress.stage import check_steps

    cfg = CompressConfig(
        steps=[{"method": "quantize", "scheme": "int8-weight"}, {"method": "export"}]
    )
    with pytest.raises(LmforgeError, match=r"steps\.1 \(export\)\.input: .* weight-only"):
        check_steps(cfg, "classification", "transformers")


def test_serve_loads_a_weight_only_artefact(trained, tmp_path):
    """lmforge serve's loader takes the directory as it is (fails on the old code: it looked
    for model.safetensors)."""
    import torch

    from lmforge.serve.loader import load_served

    source, (batch, _) = trained
    art, _ = quantize(source, tmp_path / "q", scheme="int8-weight")
    served = load_served(art.path)
    assert served.task == "classification" and "weight-only" in served.kind
    want = logits(load_compressed(art.path)[0], batch)
    assert torch.equal(logits(served.model, batch), want)


def test_a_tied_output_layer_stays_tied_and_is_stored_once(tmp_path):
    """GPT-2's output layer is its embedding: it is not quantized, stored once, tied on load;
    its Conv1D layers are quantized in their stored (in, out) layout."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    from lmforge.compress.weightonly import load_weight_only, save_weight_only

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=300, n_layer=1, n_head=2, n_embd=32, n_positions=32)
    model = GPT2LMHeadModel(config).eval()
    config.save_pretrained(tmp_path)
    facts = save_weight_only(model, tmp_path / WEIGHT_ONLY_FILE, 8, 32)
    assert facts["quantized_linears"] == 4  # GPT-2's Conv1D layers: c_attn, c_proj, c_fc, c_proj
    with safe_open(tmp_path / WEIGHT_ONLY_FILE, "pt") as f:
        keys = set(f.keys())
    assert "transformer.wte.weight" in keys and "lm_head.weight" not in keys
    assert "transformer.h.0.mlp.c_fc.weight.qdata" in keys
    back = load_weight_only(tmp_path, AutoModelForCausalLM)
    assert back.lm_head.weight.data_ptr() == back.transformer.wte.weight.data_ptr()
    assert torch.equal(back.lm_head.weight, model.lm_head.weight)  # fp32, not quantized
    ids = torch.tensor([[5, 6, 7]])
    want, got = model(input_ids=ids).logits, back(input_ids=ids).logits
    assert 0 < (want - got).abs().max() <= 0.02 * want.abs().max()


def test_the_stage_scorer_times_a_weight_only_artefact(trained, tmp_path):
    """compress's profiler loads the artefact in a fresh process, as it does every format."""
    from lmforge.compress.score import count_params, profile

    source, (batch, _) = trained
    art, _ = quantize(source, tmp_path / "q", scheme="int4-weight")
    timing = profile(art.path, {2: {k: v[:2] for k, v in batch.items()}}, repeats=1)
    assert timing["latency_ms_p50_b2"] > 0 and timing["peak_rss_mb"] > 0
    model = load_compressed(art.path)[0]
    assert count_params(model, art.path) == count_params(load_compressed(source)[0], source)
