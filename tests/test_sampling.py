"""The one generation loop (``models.sampling``) gives what ``transformers``' ``generate()``
gives: greedy tokens for decoder-only and encoder-decoder models, so evaluation numbers did not
move when the eval path switched to it."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from lmforge.models.sampling import GenRequest, SamplingParams, generate_batch
from lmforge.tasks.generation import greedy_generate

PROMPTS = [[5, 9, 13, 2], [7], [11, 3, 3, 8, 20, 21, 4]]
EOS = 1


def _hf_greedy(model, prompt: list[int], new: int) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        do_sample=False,
        eos_token_id=EOS,
        pad_token_id=0,
    )
    tokens = out[0, 1:] if model.config.is_encoder_decoder else out[0, len(prompt) :]
    tokens = tokens.tolist()
    return tokens[: tokens.index(EOS)] if EOS in tokens else tokens


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def model(request):
    torch.manual_seed(0)
    if request.param == "gpt2":
        cfg = GPT2Config(vocab_size=40, n_positions=64, n_embd=32, n_layer=2, n_head=2)
        return GPT2LMHeadModel(cfg).eval()
    cfg = T5Config(
        vocab_size=40, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=EOS,
    )  # fmt: skip
    return T5ForConditionalGeneration(cfg).eval()


def test_greedy_equals_transformers_generate(model):
    ours = greedy_generate(model, PROMPTS, pad_id=0, stop_ids=[EOS], max_new_tokens=12)
    assert ours.ids == [_hf_greedy(model, p, 12) for p in PROMPTS]
    assert ours.stopped == [len(i) < 12 for i in ours.ids]


def test_top_k_one_is_greedy_and_a_seed_repeats(model):
    def sample(**kw):
        reqs = [GenRequest(p, SamplingParams(10, **kw)) for p in PROMPTS]
        return [r.token_ids for r in generate_batch(model, None, reqs, stop_ids=[EOS], pad_id=0)]

    assert sample(temperature=1.0, top_k=1, seed=3) == sample(temperature=0)
    assert sample(temperature=1.5, seed=4) == sample(temperature=1.5, seed=4)
