"""Serving cost per million tokens from a roofline: compute for the prompt, bandwidth to decode.

Reading a prompt (prefill) processes all its tokens at once, so it is compute-bound: forward
FLOPs per token (``2·N`` plus attention) at the stated MFU. Generating (decode) makes one
forward pass per new token for the whole batch, and each pass reads every weight and each
sequence's key/value cache from memory: a step takes the longer of that read at full
bandwidth and the batch's FLOPs at the stated MFU (Pope et al. 2022, "Efficiently scaling
Transformer inference", §2). The KV cache assumes full multi-head attention (grouped-query
attention shrinks it) and a context of ``seq_len`` tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmforge.cost.hardware import Hardware
from lmforge.cost.training import ModelShape

MEMORY_USABLE = 0.9  # leave room for the runtime, workspace and fragmentation


@dataclass(frozen=True)
class InferenceCost:
    devices: int  # devices needed to hold the weights and the batch's KV cache
    weight_bytes: float
    kv_cache_bytes: float
    batch: int
    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    usd_per_million_input: float
    usd_per_million_output: float
    decode_bound: str  # "memory" or "compute"


def inference_cost(
    shape: ModelShape,
    hardware: Hardware,
    batch: int = 32,
    weight_bits: int = 16,
    mfu: float | None = None,
) -> InferenceCost:
    """Tokens/s and USD per million tokens for a replica spread over as few devices as fit."""
    mfu = hardware.typical_mfu if mfu is None else mfu
    weight_bytes = shape.params * weight_bits / 8
    # K and V, 16-bit, per layer per token of context, for every sequence in the batch
    kv_bytes = 2 * 2 * shape.layers * shape.hidden * shape.seq_len * batch
    devices = max(1, math.ceil((weight_bytes + kv_bytes) / (hardware.memory_bytes * MEMORY_USABLE)))
    flops = shape.forward_flops_per_token()
    compute = devices * hardware.peak_flops * mfu
    prefill = compute / flops
    read_seconds = (weight_bytes + kv_bytes) / (devices * hardware.bandwidth)
    compute_seconds = batch * flops / compute
    step = max(read_seconds, compute_seconds)
    decode = batch / step
    hourly = devices * hardware.price
    return InferenceCost(
        devices=devices,
        weight_bytes=weight_bytes,
        kv_cache_bytes=kv_bytes,
        batch=batch,
        prefill_tokens_per_second=prefill,
        decode_tokens_per_second=decode,
        usd_per_million_input=hourly / (prefill * 3600) * 1e6,
        usd_per_million_output=hourly / (decode * 3600) * 1e6,
        decode_bound="memory" if read_seconds >= compute_seconds else "compute",
    )
