import torch

from lmforge.pretrain.sampler import BatchSampler, mix_seed


def test_batches_are_a_pure_function_of_seed_and_step():
    a, b = BatchSampler(100, 8, 2, seed=3), BatchSampler(100, 8, 2, seed=3)
    assert torch.equal(a.indices(7, 1), b.indices(7, 1))
    assert not torch.equal(a.indices(7, 1), BatchSampler(100, 8, 2, seed=4).indices(7, 1))


def test_each_epoch_visits_every_sample_once():
    s = BatchSampler(40, 8, 1, seed=0)
    seen = torch.cat([s.indices(step, 0) for step in range(5)])
    assert sorted(seen.tolist()) == list(range(40))


def test_ranks_split_the_single_process_batch_exactly():
    s = BatchSampler(37, 8, 2, seed=1)  # 37: batches straddle epoch boundaries
    for step in range(12):
        for micro in range(2):
            whole = s.indices(step, micro)
            parts = torch.cat([s.indices(step, micro, rank=r, world_size=4) for r in range(4)])
            assert torch.equal(whole, parts)


def test_mix_seed_separates_streams():
    assert mix_seed(0, 1, 2) != mix_seed(0, 2, 1)
    assert 0 <= mix_seed(1, 2, 3) < 2**63
