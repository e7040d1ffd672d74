"""Numbers that cannot train: non-finite or absurd values are refused by the schema, and a
stage whose final weights or losses are not finite fails instead of reporting "done"."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import TOY_VOCAB, TensorRows, linear_classifier, train_toy

from lmforge.core.errors import LmforgeError, RecipeError
from lmforge.core.schema import describe_fields
from lmforge.pretrain.config import PretrainConfig
from lmforge.recipe import Recipe, parse_recipe

VOCAB = TOY_VOCAB


def full_recipe() -> dict:
    return {
        "name": "t",
        "data": {"sources": [{"builtin": "bbc-news"}]},
        "tokenizer": {"vocab_size": 500},
        "pretrain": {"max_steps": 30},
        "finetune": {},
        "evaluate": {},
    }


def recipe_error(*overrides: str) -> str:
    with pytest.raises(RecipeError) as e:
        parse_recipe(full_recipe(), "r.yaml", list(overrides))
    return str(e.value)


FLOAT_KEYS = [key for key, type_name, _, _ in describe_fields(Recipe) if "float" in type_name]


def test_the_schema_has_float_fields_in_every_training_section():
    sections = {key.split(".")[0] for key in FLOAT_KEYS}
    assert {"data", "tokenizer", "pretrain", "finetune"} <= sections


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_every_float_key_rejects_non_finite_values(key, value):
    assert f"{key}: Input should be a finite number" in recipe_error(f"{key}={value}")


@pytest.mark.parametrize("key", ["pretrain.lr", "finetune.lr"])
def test_learning_rates_above_one_are_refused_naming_the_key(key):
    for value in ("1e308", "1e3"):  # 1e3: a typo for 1e-3
        assert f"{key}: must be in (0, 1]" in recipe_error(f"{key}={value}")
    parse_recipe(full_recipe(), "r.yaml", [f"{key}=1.0"])  # the bound itself is allowed


def test_a_vocabulary_of_five_billion_is_refused_before_the_trainer_aborts():
    msg = recipe_error("tokenizer.vocab_size=5000000000")
    assert "tokenizer.vocab_size: must be at most 1,000,000" in msg
    parse_recipe(full_recipe(), "r.yaml", ["tokenizer.vocab_size=1000000"])


# ---------------------------------------------------------------- pretrain: the loop's result


class Bigram(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Embedding(VOCAB, VOCAB)

    def forward(self, input_ids, labels=None, **_):  # noqa: ANN001, ANN201
        logits = self.table(input_ids)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1)
        )
        return SimpleNamespace(loss=loss, logits=logits)


def pretrain(tmp_path: Path, lr: float, **kw) -> torch.nn.Module:
    # fewer steps than max_nonfinite (5): the streak check alone never fires
    cfg = PretrainConfig(
        max_steps=3,
        warmup_steps=1,
        batch_size=4,
        eval_every=3,
        eval_batches=1,
        checkpoint_every=3,
        tensorboard=False,
        **kw,
    )
    cfg = cfg.model_copy(update={"lr": lr})  # a value the schema would refuse, as if it slipped by
    model = Bigram()
    train_toy(model, cfg, tmp_path)
    return model


@pytest.mark.parametrize(
    ("lr", "optimizer"), [(float("inf"), "adamw"), (1e308, "adamw"), (float("inf"), "lamb")]
)
def test_pretraining_that_ends_non_finite_fails(tmp_path, lr, optimizer):
    with pytest.raises(LmforgeError, match="pretraining diverged: the final (weights|validation)"):
        pretrain(tmp_path, lr, optimizer=optimizer)


def test_pretraining_with_a_sane_lr_still_finishes(tmp_path):
    model = pretrain(tmp_path, 1e-2)
    assert torch.isfinite(model.table.weight).all()


# ---------------------------------------------------------------- finetune: fit


def rows(n: int = 24) -> TensorRows:
    """Three separable classes of 4-dim points."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    return TensorRows(
        torch.nn.functional.one_hot(y, 4).float() + 0.1 * torch.randn(n, 4, generator=g), y
    )


@pytest.mark.parametrize("lr", [float("inf"), 1e308])
def test_fine_tuning_that_diverges_fails_naming_the_weights(lr):
    from lmforge.finetune.train import fit

    with pytest.raises(LmforgeError, match=r"fine-tuning diverged in epoch 1: .*head\.weight"):
        fit(linear_classifier(4, 3), rows(), rows(), epochs=3, lr=lr, batch_size=8)


def test_fine_tuning_with_a_sane_lr_still_trains():
    from lmforge.finetune.train import fit

    history = fit(linear_classifier(4, 3), rows(), rows(), epochs=3, lr=0.1, batch_size=8)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
