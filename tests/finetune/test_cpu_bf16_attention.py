"""bf16 training on a CPU runs transformers' eager attention (faster there than SDPA's fused
kernel, core/precision.py) and hands the model back with SDPA; nothing else switches."""

import pytest
import torch
from transformers import ModernBertConfig, ModernBertForTokenClassification

from lmforge.core.precision import EAGER_MAX_TOKENS, cpu_bf16_attention, restore_attention
from lmforge.finetune.train import fit
from lmforge.tasks.base import Encoded, pad_sequences

CPU = torch.device("cpu")


def tagger() -> ModernBertForTokenClassification:
    torch.manual_seed(0)
    config = ModernBertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=48, num_labels=3,
                              pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
                              sep_token_id=2, max_position_embeddings=64)  # fmt: skip
    return ModernBertForTokenClassification(config)


def implementation(model) -> str:
    return model.config._attn_implementation


@pytest.mark.parametrize(
    ("precision", "device", "seq_len"),
    [("fp32", CPU, 16), ("bf16", torch.device("cuda"), 16), ("bf16", CPU, EAGER_MAX_TOKENS + 1)],
)
def test_only_bf16_on_a_cpu_with_short_sequences_switches(precision, device, seq_len):
    model = tagger()
    assert cpu_bf16_attention(model, precision, device, seq_len) is None
    assert implementation(model) == "sdpa"


def test_switch_and_restore_also_through_peft():
    from peft import LoraConfig, get_peft_model

    model = tagger()
    before = cpu_bf16_attention(model, "bf16", CPU, 16)
    assert before == "sdpa" and implementation(model) == "eager"
    restore_attention(model, before)
    assert implementation(model) == "sdpa"
    wrapped = get_peft_model(tagger(), LoraConfig(target_modules=["Wqkv"], task_type="TOKEN_CLS"))
    before = cpu_bf16_attention(wrapped, "bf16", CPU, 16)
    assert implementation(wrapped.get_base_model()) == "eager"
    restore_attention(wrapped, before)
    assert implementation(wrapped.get_base_model()) == "sdpa"


def test_eager_and_sdpa_compute_the_same_padded_loss():
    model = tagger().eval()
    ids = pad_sequences([[1, 5, 6, 7, 2], [1, 8, 2]], 0)
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(),
             "labels": torch.where(ids != 0, ids % 3, -100)}  # fmt: skip
    with torch.no_grad():
        sdpa = model(**batch).loss
        model.set_attn_implementation("eager")
        eager = model(**batch).loss
    assert torch.allclose(sdpa, eager, atol=1e-5)


def test_fit_trains_bf16_with_eager_attention_and_returns_sdpa():
    model = tagger()
    seen = []
    model.register_forward_pre_hook(lambda m, _: seen.append((m.training, implementation(m))))
    rows = [[1, 5 + i % 7, 6, 2] for i in range(16)]
    features = [{"input_ids": r, "labels": [x % 3 for x in r]} for r in rows]

    def collate(fs):
        ids = pad_sequences([f["input_ids"] for f in fs], 0)
        return {"input_ids": ids, "attention_mask": (ids != 0).long(),
                "labels": pad_sequences([f["labels"] for f in fs], -100)}  # fmt: skip

    data = Encoded(features, [None] * 16, collate)
    fit(model, data, data, epochs=1, lr=1e-3, batch_size=8, precision="bf16")
    assert {impl for training, impl in seen if training} == {"eager"}
    assert implementation(model) == "sdpa"
    seen.clear()
    fit(model, data, None, epochs=1, lr=1e-3, batch_size=8, precision="fp32")
    assert {impl for _, impl in seen} == {"sdpa"}
