"""GPT presets train with GPT-2's tanh GELU as one fused kernel (nanoGPT-parity speed)."""

from __future__ import annotations

import torch

from lmforge.models import build_model
from lmforge.models.spec import ModelSpec

SPECIALS = {"eos": 0, "bos": None, "pad": None}


def test_gpt_presets_use_the_fused_tanh_gelu_with_gpt2_outputs():
    spec = ModelSpec(preset="gpt-tiny", layers=1, heads=2, hidden=32, intermediate=64, context=16)
    torch.manual_seed(0)
    model = build_model(spec, "clm", 50, SPECIALS).eval()
    assert model.config.activation_function == "gelu_pytorch_tanh"
    # the same function as GPT-2's "gelu_new", so the same weights give the same outputs
    reference = type(model)(
        type(model.config)(**{**model.config.to_dict(), "activation_function": "gelu_new"})
    )
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(1, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=ids).logits, reference.eval()(input_ids=ids).logits, atol=1e-5, rtol=0
        )
