"""One contract for every registered fine-tuning method (PEFT's TEST_CASES pattern)."""

import pytest
import torch
from helpers import minilm_shaped_classifier, tiny_bert, tiny_modernbert
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from lmforge.core.errors import LmforgeError
from lmforge.finetune.methods import (
    METHODS,
    MethodConfig,
    apply_method,
    trainable_parameters,
    training_methods,
)

CFG = MethodConfig(r=4, alpha=8, num_virtual_tokens=4, adapter_size=8)


def tiny_classifier(seed: int = 0, arch: str = "bert") -> torch.nn.Module:
    return (tiny_modernbert if arch == "modernbert" else tiny_bert)(seed=seed, num_labels=3)


def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 100, (4, 12), generator=g)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.tensor([0, 1, 2, 1]),
    }


def train_steps(model, steps=3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = model(**batch()).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
@pytest.mark.parametrize("name", training_methods())
def test_method_contract(name, arch, tmp_path):
    base = tiny_classifier(arch=arch)
    if (name, arch) == ("prefix", "modernbert"):  # no past_key_values: said before training
        with pytest.raises(LmforgeError, match="prefix tuning passes its prefix as past_key_v"):
            apply_method(name, base, CFG, "SEQ_CLS", total_steps=10)
        return
    base.save_pretrained(tmp_path / "base")
    model = apply_method(name, base, CFG, "SEQ_CLS", total_steps=10)
    trainable, total = trainable_parameters(model)
    assert 0 < trainable <= total
    if name != "full":
        assert trainable < 0.5 * total, f"{name} trains {trainable}/{total}"
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    train_steps(model)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if n in frozen)
    if not METHODS.get(name).uses_peft:
        return

    from peft import PeftModel

    model.eval()
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "base"), tmp_path / "adapter"
    ).eval()
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, reloaded(**inputs).logits, atol=1e-6)


def test_lora_merges_into_a_plain_model_with_the_same_outputs():
    model = apply_method("lora", tiny_classifier(), CFG, "SEQ_CLS", total_steps=10)
    train_steps(model)
    model.eval()
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    with torch.no_grad():
        adapter_logits = model(**inputs).logits
        merged = model.merge_and_unload()
        assert type(merged) is BertForSequenceClassification
        assert (merged(**inputs).logits - adapter_logits).abs().max().item() < 1e-5


def test_lora_trains_under_one_percent_of_a_real_sized_encoder():
    model = apply_method("lora", minilm_shaped_classifier(), MethodConfig(), "SEQ_CLS", 10)
    trainable, total = trainable_parameters(model)
    assert trainable / total < 0.01


def test_unknown_targets_are_a_clear_error():
    with pytest.raises(LmforgeError, match="target_modules"):
        apply_method(
            "lora", tiny_classifier(), MethodConfig(target_modules=["nope"]), "SEQ_CLS", 10
        )


def test_fit_prunes_adalora_ranks_to_the_budget():
    from lmforge.finetune.train import fit
    from lmforge.tasks.base import Encoded

    b = batch()
    features = [
        {"input_ids": row.tolist(), "labels": i % 3} for i, row in enumerate(b["input_ids"])
    ]

    def collate(fs):
        return {
            "input_ids": torch.tensor([f["input_ids"] for f in fs]),
            "labels": torch.tensor([f["labels"] for f in fs]),
        }

    data = Encoded(features * 8, [0] * 32, collate)
    cfg = MethodConfig(r=2, adalora_init_r=6)
    model = apply_method("adalora", tiny_classifier(), cfg, "SEQ_CLS", total_steps=40)
    fit(model, data, None, epochs=5, lr=1e-2, batch_size=4)
    ranks = model.peft_config["default"].rank_pattern  # set by update_and_allocate
    assert ranks and sum(map(sum, ranks.values())) == 2 * len(ranks)  # average rank r=2 of 6
