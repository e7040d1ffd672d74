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
