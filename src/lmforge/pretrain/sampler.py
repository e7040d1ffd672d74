"""Which training samples a (step, micro-step, rank) reads: a pure function of the seed.

The sample stream is an endless sequence of seeded permutations of the training set (one per
epoch). Optimizer step ``s``, micro-step ``m`` reads the next ``batch_size`` samples of that
stream, and rank ``r`` of ``W`` takes the ``r``-th contiguous slice of them. Hence

- resuming at step ``s`` needs no saved data position beyond ``s`` itself, and
- ``W`` processes with ``batch_size / W`` each see exactly the samples one process would,
  so the global batch (and the loss) is the same for any number of processes.
"""

from __future__ import annotations

import hashlib

import torch


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (independent streams per step, micro-step, rank)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class BatchSampler:
    def __init__(self, num_samples: int, batch_size: int, grad_accum: int, seed: int) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.seed = seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            self._perms = {epoch: torch.randperm(self.num_samples, generator=g)}  # keep one epoch
        return self._perms[epoch]

    def indices(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        per_rank = self.batch_size // world_size
        start = (step * self.grad_accum + micro) * self.batch_size + rank * per_rank
        positions = torch.arange(start, start + per_rank)
        out = torch.empty(per_rank, dtype=torch.long)
        for epoch in positions.div(self.num_samples, rounding_mode="floor").unique().tolist():
            sel = positions // self.num_samples == epoch
            out[sel] = self._perm(epoch)[positions[sel] % self.num_samples]
        return out

    def epoch_of(self, step: int) -> float:
        return step * self.grad_accum * self.batch_size / self.num_samples
