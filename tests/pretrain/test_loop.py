"""The training loop on a toy model: non-finite losses are skipped, then stop the run."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import TOY_VOCAB, toy_blocks, train_toy

from lmforge.core.errors import LmforgeError
from lmforge.pretrain.config import PretrainConfig

VOCAB = TOY_VOCAB


class Flaky(torch.nn.Module):
    """A bigram model whose loss is NaN on the forward calls listed in ``bad``."""

    def __init__(self, bad: set[int] | None = None) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(VOCAB, VOCAB)
        self.bad = bad
        self.calls = 0

    def forward(self, input_ids, labels=None, **_):  # noqa: ANN001, ANN201
        logits = self.table(input_ids)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1)
        )
        if self.training:
            self.calls += 1
            if self.bad is None or self.calls in self.bad:
                loss = loss * float("nan")
        return SimpleNamespace(loss=loss, logits=logits)


def run(model, tmp_path, **kw):
    settings = {"eval_every": 3, "checkpoint_every": 3, **kw}
    cfg = PretrainConfig(
        max_steps=6,
        warmup_steps=1,
        batch_size=4,
        eval_batches=1,
        tensorboard=False,
        max_nonfinite=3,
        lr=0.1,
        **settings,
    )
    return train_toy(model, cfg, tmp_path)


def test_a_non_finite_step_is_skipped_and_counted(tmp_path):
    torch.manual_seed(0)
    model = Flaky(bad={2})
    before = model.table.weight.detach().clone()
    blocks = toy_blocks()
    with torch.no_grad():
        initial = model.eval()(blocks, blocks).loss.item()
    model.train()
    result = run(model, tmp_path)
    assert result.state.step == 6 and result.state.skipped_steps == 1
    assert result.state.nonfinite_streak == 0
    assert torch.isfinite(model.table.weight).all()  # the NaN gradient never reached the weights
    assert not torch.equal(before, model.table.weight)
    assert result.final_eval["loss"] < initial  # training went on after the bad step


def test_non_finite_losses_in_a_row_stop_with_a_clear_error(tmp_path):
    with pytest.raises(LmforgeError, match="3 non-finite losses in a row at step 2"):
        run(Flaky(bad=None), tmp_path)


def test_lamb_skips_a_non_finite_step_on_the_host(tmp_path):
    model = Flaky(bad={2})
    result = run(model, tmp_path, optimizer="lamb")
    assert result.state.step == 6 and result.state.skipped_steps == 1
    assert torch.isfinite(model.table.weight).all()


def test_no_per_step_host_sync_with_fused_adamw(tmp_path, monkeypatch):
    """Values come back from the device once per log_every steps, never per step."""
    reads = []
    tolist = torch.Tensor.tolist

    def counted_tolist(self):  # noqa: ANN001, ANN202
        caller = Path(sys._getframe(1).f_code.co_filename).name
        if caller != "sampler.py":  # batch indices: host tensors by design
            reads.append((caller, tuple(self.shape)))
        return tolist(self)

    def no_item(self):  # noqa: ANN001, ANN202
        raise AssertionError("a per-step .item() forces a host sync")

    monkeypatch.setattr(torch.Tensor, "tolist", counted_tolist)
    monkeypatch.setattr(torch.Tensor, "item", no_item)
    model = Flaky(bad={2})
    result = run(model, tmp_path, log_every=3, eval_every=6, checkpoint_every=6)
    monkeypatch.undo()
    # two reads of 3 steps x (loss, grad norm) and one of the evaluation's sums
    assert reads == [("loop.py", (3, 2)), ("loop.py", (3, 2)), ("evaluate.py", (9,))]
    assert result.state.skipped_steps == 1  # the non-finite step was still found and skipped
    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    assert [("grad_norm" in r) for r in result.history] == [True, False, True, True, True, True]
