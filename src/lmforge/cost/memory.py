"""Training memory per device: model states under DDP / ZeRO / FSDP, and activations.

Model states follow the ZeRO paper (Rajbhandari et al. 2020, §3.1 and figure 1): mixed
precision with Adam keeps bf16 weights (2 bytes per parameter) and gradients (2) and fp32
master weights, momentum and variance (12). ZeRO-1 shards the optimizer states over the
data-parallel devices, ZeRO-2 the gradients too, ZeRO-3 — and PyTorch FSDP's full sharding,
which is the same scheme — the weights as well.

Activations per layer follow Korthikanti et al. 2022 (eq. 1, no tensor parallelism):
``s·b·h·(34 + 5·a·s/h)`` bytes for 16-bit activations (the ``5·a·s/h`` part is the attention
score matrices; fused attention kernels do not keep them). With full activation checkpointing
each layer keeps only its 16-bit input (``2·s·b·h``) and one layer's activations are rebuilt
at a time during the backward pass. Fp32 logits add ``4·s·b·vocab`` when the vocabulary is
known. Activations are per micro-batch and are not sharded by data parallelism.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lmforge.cost.training import ModelShape

Strategy = Literal["ddp", "zero1", "zero2", "zero3", "fsdp"]
STRATEGIES: tuple[str, ...] = ("ddp", "zero1", "zero2", "zero3", "fsdp")
Precision = Literal["mixed", "fp32"]
# bytes per parameter: (weights, gradients, optimizer states) with Adam
BYTES_PER_PARAM: dict[str, tuple[int, int, int]] = {
    "mixed": (2, 2, 12),  # bf16 weights and grads; fp32 master, momentum, variance
    "fp32": (4, 4, 8),  # fp32 weights and grads; momentum, variance
}
# which model states each strategy divides over the devices: (weights, grads, optimizer)
SHARDED: dict[str, tuple[bool, bool, bool]] = {
    "ddp": (False, False, False),
    "zero1": (False, False, True),
    "zero2": (False, True, True),
    "zero3": (True, True, True),
    "fsdp": (True, True, True),
}


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes per device; ``total`` without and ``total_checkpointed`` with checkpointing."""

    strategy: str
    weights: float
    gradients: float
    optimizer: float
    activations: float
    activations_checkpointed: float

    @property
    def model_states(self) -> float:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> float:
        return self.model_states + self.activations

    @property
    def total_checkpointed(self) -> float:
        return self.model_states + self.activations_checkpointed


def activation_bytes(
    shape: ModelShape, micro_batch: int = 1, checkpointing: bool = False, precision: str = "mixed"
) -> float:
    """Activation memory of one micro-batch of ``micro_batch × seq_len`` tokens."""
    s, b, h, a, layers = shape.seq_len, micro_batch, shape.hidden, shape.heads, shape.layers
    per_layer = s * b * h * (34 + 5 * a * s / h)
    # checkpointed: each layer keeps its 16-bit input; one layer is rebuilt at a time
    total = layers * 2 * s * b * h + per_layer if checkpointing else layers * per_layer
    if precision == "fp32":  # the 34 and 5as/h coefficients count 16-bit values
        total *= 2
    if shape.vocab:
        total += 4 * s * b * shape.vocab
    return float(total)


def training_memory(
    shape: ModelShape,
    devices: int = 1,
    strategy: str = "ddp",
    precision: str = "mixed",
    micro_batch: int = 1,
) -> TrainingMemory:
    """Memory per device for data-parallel training over ``devices`` with ``strategy``."""
    w, g, o = (shape.params * n for n in BYTES_PER_PARAM[precision])
    shard_w, shard_g, shard_o = SHARDED[strategy]
    return TrainingMemory(
        strategy=strategy,
        weights=w / devices if shard_w else w,
        gradients=g / devices if shard_g else g,
        optimizer=o / devices if shard_o else o,
        activations=activation_bytes(shape, micro_batch, False, precision),
        activations_checkpointed=activation_bytes(shape, micro_batch, True, precision),
    )
