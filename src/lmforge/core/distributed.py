"""Process-group plumbing for runs launched with ``torchrun`` (PyTorch distributed).

Under ``torchrun --nproc_per_node N lmforge run ...`` every process runs the whole CLI: the
process group is created once, rank 0 owns the run directory (single-process stages,
summary, checkpoints), and the others wait at barriers and train alongside in the stages
that are distributed (pretraining).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """What torchrun's environment says (a single process when it says nothing)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed() -> DistInfo:
    """Join the process group if launched by torchrun (gloo on CPU, NCCL on CUDA).

    One process under torchrun joins too: FSDP needs a process group even on one GPU.
    """
    info = dist_info()
    if not info.enabled and "TORCHELASTIC_RUN_ID" not in os.environ:
        return info
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return info


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's value of ``obj`` on every rank (e.g. the run directory name)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
