"""Data parallelism for the pretraining loop: DDP, or FSDP2 (``fully_shard``).

Under FSDP every parameter is a sharded ``DTensor``, so anything that needs whole tensors
(checkpoints, the saved model, the gradient norm) goes through
``torch.distributed.checkpoint.state_dict``'s full state dicts, which are collectives:
every rank calls them, rank 0 writes. Checkpoints keep one format whatever the wrapper:
``model.safetensors`` with full tensors.
"""

from __future__ import annotations

from typing import Any

import torch

from lmforge.core.distributed import DistInfo
from lmforge.pretrain.config import PretrainConfig

# Transformer block classes of transformers' models end with one of these (GPT2Block,
# LlamaDecoderLayer, BertLayer): each becomes one FSDP unit, gathered just before it runs
_BLOCK_SUFFIXES = ("Block", "DecoderLayer", "Layer")


def uses_fsdp(cfg: PretrainConfig) -> bool:
    """FSDP needs a process group, i.e. a launch by torchrun (one process is enough)."""
    dist = torch.distributed
    return cfg.distributed == "fsdp" and dist.is_available() and dist.is_initialized()


def wrap_model(
    model: torch.nn.Module, cfg: PretrainConfig, device: torch.device, dist: DistInfo
) -> torch.nn.Module:
    """FSDP2 (in place: the module stays the same object), DDP, or the model itself."""
    if uses_fsdp(cfg):
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules()):
            if module is not model and type(module).__name__.endswith(_BLOCK_SUFFIXES):
                fully_shard(module)
        return fully_shard(model)
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole value of a possibly sharded tensor (a collective for a ``DTensor``)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _options(**kw: Any):  # noqa: ANN202 - StateDictOptions
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def gather_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Full model (and optimizer) state dicts on rank 0's CPU; empty on the other ranks.

    A collective: every rank must call it. Tied weights appear once (under the name
    ``named_parameters`` gives them), as ``safetensors.torch.save_model`` writes them.
    """
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    weights = get_model_state_dict(model, options=_options(cpu_offload=True))
    keep = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    weights = {k: v for k, v in weights.items() if k in keep}
    optim = None
    if optimizer is not None:
        optim = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    return weights, optim


def scatter_state(
    model: torch.nn.Module,
    weights: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    optim: dict[str, Any],
) -> None:
    """Load full state dicts (every rank holds them) into the sharded model and optimizer."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    weights = dict(weights)
    by_param: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_param.setdefault(id(p), []).append(name)
    for names in by_param.values():  # tied weights were saved under one of their names
        present = next((n for n in names if n in weights), None)
        for n in names:
            if present is not None and n not in weights:
                weights[n] = weights[present]
    set_model_state_dict(model, weights, options=_options(strict=True))
    set_optimizer_state_dict(model, optimizer, optim, options=_options())
