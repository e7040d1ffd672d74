"""The fine-tuning loop's batch plan: every example once per epoch, and with
``group_by_length`` batches of near-equal length in a random order."""

import random

import torch

from lmforge.finetune.train import MEGABATCH, epoch_batches, feature_length


def padded_tokens(batches, lengths):
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_plain_order_is_the_seeded_permutation_cut_into_batches():
    """Without lengths the plan is exactly the order fit() always used, so recipes that do not
    set group_by_length train on the same batches as before."""
    batches = epoch_batches(103, 10, torch.Generator().manual_seed(3))
    order = torch.randperm(103, generator=torch.Generator().manual_seed(3)).tolist()
    assert batches == [order[i : i + 10] for i in range(0, 103, 10)]


def test_length_grouping_covers_every_example_once_with_far_less_padding():
    rng = random.Random(0)
    lengths = [rng.randint(3, 64) for _ in range(5000)]
    plain = epoch_batches(5000, 32, torch.Generator().manual_seed(0))
    grouped = epoch_batches(5000, 32, torch.Generator().manual_seed(0), lengths)
    assert sorted(i for b in grouped for i in b) == list(range(5000))
    assert len(grouped) == len(plain) == -(-5000 // 32)  # the LR schedule's step count holds
    real = sum(lengths)
    assert padded_tokens(grouped, lengths) < 1.1 * real < padded_tokens(plain, lengths) / 1.5
    # the order is still random: batches do not come sorted by length, and seeds differ
    maxima = [max(lengths[i] for i in b) for b in grouped]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
    other = epoch_batches(5000, 32, torch.Generator().manual_seed(1), lengths)
    assert other != grouped
    # sorting happens within groups of MEGABATCH batches only, not across the whole epoch
    first_group = set(torch.randperm(5000, generator=torch.Generator().manual_seed(0))
                      .tolist()[: 32 * MEGABATCH])  # fmt: skip
    assert sum(set(b) <= first_group for b in grouped) == MEGABATCH


def test_feature_length_is_the_longest_token_list():
    assert feature_length({"input_ids": [1, 2, 3], "labels": [4, 5, 6, 7, 8]}) == 5
    assert feature_length({"input_ids": [1, 2], "attention_mask": [1, 1], "labels": 0}) == 2


class _Pairs:
    """The data interface fit() needs: a length and index batches with labels."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, idx: list[int]) -> dict[str, torch.Tensor]:
        return {"x": self.x[idx], "labels": self.y[idx]}


class _Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        from types import SimpleNamespace

        return SimpleNamespace(loss=torch.nn.functional.cross_entropy(self.linear(x), labels))


def _overfitting_run(keep_best: bool):
    """Validation labels are the training labels flipped, so every epoch of training raises the
    validation loss: epoch 1 is the best."""
    from lmforge.finetune.train import fit, mean_loss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    train, val = _Pairs(x, y), _Pairs(x[:16], 1 - y[:16])
    torch.manual_seed(0)
    model = _Classifier()
    history = fit(model, train, val, epochs=4, lr=0.1, batch_size=8, keep_best=keep_best)
    return history, mean_loss(model, val, 8, torch.device("cpu"))


def test_keep_best_ends_with_the_weights_of_the_lowest_validation_loss():
    from lmforge.finetune.train import best_epoch

    history, final = _overfitting_run(keep_best=True)
    losses = [r["val_loss"] for r in history]
    assert losses == sorted(losses) and losses[0] < losses[-1]  # the scenario holds
    assert best_epoch(history) == 1
    assert final == history[0]["val_loss"]  # epoch 1's weights, not the last epoch's
    plain, last = _overfitting_run(keep_best=False)
    assert plain == history  # the same training either way; only the ending differs
    assert last == plain[-1]["val_loss"] != final


def test_best_epoch_takes_the_first_of_equal_losses_and_none_without_validation():
    from lmforge.finetune.train import best_epoch

    rows = [
        {"epoch": 1, "val_loss": 0.5},
        {"epoch": 2, "val_loss": 0.4},
        {"epoch": 3, "val_loss": 0.4},
    ]
    assert best_epoch(rows) == 2
    assert best_epoch([{"epoch": 1, "train_loss": 0.3}]) is None
