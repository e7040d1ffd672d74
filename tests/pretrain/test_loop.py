"""The training loop on a toy model: non-finite losses are skipped, then stop the run."""

from types import SimpleNamespace

import pytest
import torch

from lmforge.core.distributed import DistInfo
from lmforge.core.errors import LmforgeError
from lmforge.core.metrics import MetricsLogger
from lmforge.pretrain.config import PretrainConfig
from lmforge.pretrain.loop import train

VOCAB = 10


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
    cfg = PretrainConfig(
        max_steps=6,
        warmup_steps=1,
        batch_size=4,
        eval_every=3,
        eval_batches=1,
        checkpoint_every=3,
        tensorboard=False,
        max_nonfinite=3,
        lr=0.1,
        **kw,
    )
    blocks = torch.randint(0, VOCAB, (64, 8), generator=torch.Generator().manual_seed(0))

    def batch(idx, seed):
        return {"input_ids": blocks[idx], "labels": blocks[idx]}

    return train(
        model,
        cfg,
        train_batch=batch,
        val_batch=batch,
        num_train=64,
        num_val=64,
        tokens_per_sample=8,
        work=tmp_path,
        device=torch.device("cpu"),
        dist=DistInfo(),
        seed=0,
        metrics=MetricsLogger(tmp_path / "m.jsonl"),
        resume=False,
        recipe_hash="h",
    )


def test_a_non_finite_step_is_skipped_and_counted(tmp_path):
    torch.manual_seed(0)
    model = Flaky(bad={2})
    before = model.table.weight.detach().clone()
    blocks = torch.randint(0, VOCAB, (64, 8), generator=torch.Generator().manual_seed(0))
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
