"""ELECTRA replaced-token detection: the discriminator learns, saves as stock transformers
classes, and a run pretrains it and fine-tunes a classifier from it."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from pretrain_tiny import base_recipe, pretrain_section, write_recipe
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from lmforge.cli import main
from lmforge.pretrain.electra import ElectraRTD, generator_config, warn_if_untrained
from lmforge.pretrain.mlm import mask_tokens

TINY_ELECTRA = {
    "preset": "bert-tiny",
    "layers": 2,
    "heads": 2,
    "hidden": 32,
    "intermediate": 64,
    "context": 64,
}


def tiny_rtd(vocab: int, **overrides: float) -> ElectraRTD:
    torch.manual_seed(0)
    shape = {"embedding_size": 32, "hidden_size": 32, "intermediate_size": 64}
    dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    config = ElectraConfig(
        vocab_size=vocab,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        **{**shape, **dropout, **overrides},
    )
    return ElectraRTD(
        ElectraForMaskedLM(generator_config(config, 0.25)), ElectraForPreTraining(config)
    )


def test_generator_is_smaller_and_shares_the_embeddings():
    model = tiny_rtd(50)
    gen, disc = model.generator, model.discriminator
    assert gen.config.hidden_size == 8 and gen.config.num_attention_heads == 1
    assert gen.config.num_hidden_layers == disc.config.num_hidden_layers
    assert gen.electra.embeddings is disc.electra.embeddings
    assert gen.generator_lm_head.weight is disc.electra.embeddings.word_embeddings.weight


def test_flops_per_token_are_what_a_training_step_computes():
    """MFU's numerator for ELECTRA counts both encoders and their real heads: it equals torch's
    own count of one forward + backward (the discriminator's formula alone is 6% off here)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lmforge.models.flops import electra_flops_per_token

    # pretrain-zh's width; attention dropout on (the default): without it torch's CPU
    # attention runs a fused kernel that the counter does not count
    rtd = tiny_rtd(
        400, embedding_size=128, hidden_size=128, intermediate_size=512,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )  # fmt: skip
    x = torch.randint(5, 400, (2, 64))
    labels = torch.full_like(x, -100)
    labels[:, ::7] = x[:, ::7]
    with FlopCounterMode(display=False) as counter:
        rtd(input_ids=x, labels=labels, attention_mask=torch.ones_like(x)).loss.backward()
    measured = counter.get_total_flops() / x.numel()
    assert electra_flops_per_token(rtd.config, rtd.generator.config, 64) == measured


def test_discriminator_learns_to_spot_replaced_tokens():
    """Blocks in which each position always holds the same token: a sample from the
    (still poor) generator is wrong for its position, which the discriminator learns to see
    within a few dozen steps, beating the all-original baseline; its loss falls."""
    vocab = 40
    model = tiny_rtd(vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator()
    blocks = (3 + torch.arange(16)).expand(16, 16)  # (B, T): ids 3..18 in order

    def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_tokens(
            blocks,
            mask_id=2,
            vocab_size=vocab,
            special_ids={0, 1, 2},
            probability=0.15,
            generator=gen.manual_seed(seed),
        )

    def score() -> tuple[float, float, float]:
        model.eval()
        with torch.no_grad():
            torch.manual_seed(1)  # the generator's samples
            out = model(*batch(10_000))
        model.train()
        correct = ((out.rtd_logits > 0) == out.replaced).float().mean().item()
        return out.discriminator_loss.item(), correct, 1 - out.replaced.float().mean().item()

    loss_before, _, _ = score()
    for step in range(45):
        model(*batch(step)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    loss_after, accuracy, all_original = score()
    assert loss_after < 0.5 * loss_before
    assert all_original < 0.95  # the generator still errs: there is something to detect
    assert accuracy > all_original + 0.05


def electra_recipe(**pretrain) -> dict:
    raw = {
        **base_recipe("wordpiece"),
        "pretrain": pretrain_section(model=TINY_ELECTRA, objective="electra", **pretrain),
    }
    raw["data"]["split"] = {"val": 0.1, "test": 0.2}
    return raw


def test_pretrain_then_finetune_from_the_discriminator(tmp_path):
    raw = electra_recipe(electra={"generator_size": 0.5, "disc_weight": 50})
    raw["finetune"] = {
        "task": "classification",
        "method": "full",
        "model": {"path": "pretrain"},
        "data": {"limit": 40},
        "epochs": 1,
        "max_length": 32,
    }
    run = tmp_path / "run"
    assert main(["run", str(write_recipe(tmp_path / "r.yaml", raw)), "--out", str(run)]) == 0
    stages = json.loads((run / "summary.json").read_text())["stages"]
    m = stages["pretrain"]["metrics"]
    assert m["steps"] == 12
    assert m["val_rtd_loss"] >= 0 and 0 <= m["val_rtd_accuracy"] <= 1
    assert 0.8 < m["val_rtd_baseline_accuracy"] < 1  # ~15% masked, some sampled back
    model_dir = run / "pretrain" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["ElectraForPreTraining"]
    gen_config = json.loads((model_dir / "generator" / "config.json").read_text())
    assert gen_config["hidden_size"] == 16 and gen_config["embedding_size"] == 32
    assert stages["finetune"]["status"] == "done"
    ft_config = json.loads((run / "finetune" / "model" / "config.json").read_text())
    assert ft_config["architectures"] == ["ElectraForSequenceClassification"]

    # plain transformers, in a process that never imports lmforge
    code = f"""
import sys, torch
from transformers import AutoModel, AutoTokenizer, ElectraForPreTraining
path = {str(model_dir)!r}
tok = AutoTokenizer.from_pretrained(path)
batch = tok(["the government said on monday"], return_tensors="pt")
disc, info = ElectraForPreTraining.from_pretrained(path, output_loading_info=True)
assert not info["missing_keys"], info
logits = disc(**batch).logits
assert logits.shape == batch["input_ids"].shape and torch.isfinite(logits).all()
assert type(AutoModel.from_pretrained(path)).__name__ == "ElectraModel"
assert "lmforge" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_checkpoint_restores_both_halves_and_keeps_the_sharing(tmp_path):
    """Exact resume needs the generator too, and the shared embedding must stay one tensor
    (safetensors refuses or duplicates shared tensors if handled naively)."""
    from lmforge.pretrain.checkpoint import TrainerState, load_checkpoint, save_checkpoint

    model = tiny_rtd(50)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(
        *mask_tokens(
            torch.arange(3, 19).expand(4, 16),
            mask_id=2,
            vocab_size=50,
            special_ids={0, 1, 2},
            probability=0.3,
            generator=torch.Generator().manual_seed(0),
        )
    ).loss.backward()
    optimizer.step()
    path = save_checkpoint(tmp_path, model, optimizer, TrainerState(step=1), keep=1)
    fresh = tiny_rtd(50)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    assert load_checkpoint(path, fresh, fresh_optimizer, torch.device("cpu")).step == 1
    for (name, saved), (_, restored) in zip(
        model.state_dict().items(), fresh.state_dict().items(), strict=True
    ):
        assert torch.equal(saved, restored), name
    shared = fresh.discriminator.electra.embeddings.word_embeddings.weight
    assert fresh.generator.generator_lm_head.weight is shared
    assert fresh.generator.electra.embeddings is fresh.discriminator.electra.embeddings


def test_a_discriminator_stuck_on_the_prior_is_flagged():
    assert warn_if_untrained({"rtd_accuracy": 0.851, "rtd_baseline_accuracy": 0.851})
    assert not warn_if_untrained({"rtd_accuracy": 0.93, "rtd_baseline_accuracy": 0.85})
    assert not warn_if_untrained({"loss": 2.0})  # not an ELECTRA run
