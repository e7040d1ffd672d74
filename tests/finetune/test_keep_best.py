"""finetune.keep_best: the fine-tuned model is the epoch with the lowest validation loss."""

from __future__ import annotations

import json

import torch
import yaml
from helpers import TensorRows, classify_section, linear_classifier, local_encoder, write_csv

from lmforge.cli import main
from lmforge.data.builtin import load_builtin
from lmforge.finetune.train import best_epoch, fit, mean_loss


def _overfitting_run(keep_best: bool):
    """Validation labels are the training labels flipped, so every epoch of training raises the
    validation loss: epoch 1 is the best."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    train, val = TensorRows(x, y), TensorRows(x[:16], 1 - y[:16])
    model = linear_classifier(4, 2)
    history = fit(model, train, val, epochs=4, lr=0.1, batch_size=8, keep_best=keep_best)
    return history, mean_loss(model, val, 8, torch.device("cpu"))


def test_keep_best_ends_with_the_weights_of_the_lowest_validation_loss():
    history, final = _overfitting_run(keep_best=True)
    losses = [r["val_loss"] for r in history]
    assert losses == sorted(losses) and losses[0] < losses[-1]  # the scenario holds
    assert best_epoch(history) == 1
    assert final == history[0]["val_loss"]  # epoch 1's weights, not the last epoch's
    plain, last = _overfitting_run(keep_best=False)
    assert plain == history  # the same training either way; only the ending differs
    assert last == plain[-1]["val_loss"] != final


def test_best_epoch_takes_the_first_of_equal_losses_and_none_without_validation():
    rows = [
        {"epoch": 1, "val_loss": 0.5},
        {"epoch": 2, "val_loss": 0.4},
        {"epoch": 3, "val_loss": 0.4},
    ]
    assert best_epoch(rows) == 2
    assert best_epoch([{"epoch": 1, "train_loss": 0.3}]) is None


def test_the_stage_reports_the_kept_epoch_and_needs_a_val_split(tmp_path):
    docs = load_builtin("bbc-news", limit=60)
    train = write_csv(tmp_path / "train.csv", docs[:40], chars=300)
    test = write_csv(tmp_path / "test.csv", docs[40:], chars=300)
    base = local_encoder(tmp_path / "base", [d.text for d in docs])

    def run(name: str, **data) -> dict:
        section = classify_section(base, train, test, method="full", epochs=3, keep_best=True)
        section["data"].update(data)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "finetune": section}))
        assert main(["run", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path / name)]) == 0
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        return summary["stages"]["finetune"]["metrics"]

    m = run("with-val", val=str(test))
    losses = [r["val_loss"] for r in m["history"]]
    assert m["kept_epoch"] == 1 + losses.index(min(losses))
    assert "kept_epoch" not in run("no-val")  # nothing to choose by: the last epoch stays
