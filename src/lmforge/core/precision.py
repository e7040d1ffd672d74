"""``precision: auto``: run in whichever of fp32 and bf16 this machine runs faster.

Used by pretraining (``pretrain.precision``), fine-tuning (``finetune.precision``) and serving
(``lmforge serve --precision``).

bf16 autocast is not faster everywhere: on a CPU with AMX it was 1.25x faster per step for a
tiny GPT, on an AMD EPYC without AMX bf16 matmuls reach 0.41 TFLOP/s against fp32's 0.19-0.38
(STACK.md), and for small matrices the casts autocast adds can cost more than they save. So
``auto`` times the model's own largest product, the MLP's (tokens, hidden) @ (hidden, 4 hidden),
both ways under the autocast the loop would use (casts included), and keeps the faster. A
probe takes a fraction of a second and is cached per process and shape.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass

import torch

from lmforge.core.log import logger

PROBE_REPEATS = 5
PROBE_MAX_TOKENS = 4096  # larger batches run the same kernels: cap the probe's cost


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in, and why (the probe's seconds when ``auto`` decided)."""

    precision: str  # fp32 | bf16 | fp16
    requested: str
    fp32_seconds: float | None = None
    bf16_seconds: float | None = None

    def metrics(self) -> dict[str, str | float]:
        """What the stage records: the precision used, and the probe's timings if any."""
        out: dict[str, str | float] = {"precision": self.precision}
        if self.fp32_seconds is not None and self.bf16_seconds is not None:
            out["precision_probe_fp32_ms"] = self.fp32_seconds * 1e3
            out["precision_probe_bf16_ms"] = self.bf16_seconds * 1e3
        return out


def _time_product(
    a: torch.Tensor, w: torch.Tensor, dtype: torch.dtype | None, device: torch.device
) -> float:
    """Seconds of the fastest of ``PROBE_REPEATS`` products ``a @ w``, under autocast to
    ``dtype`` (None: plain fp32)."""
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else None
    best = float("inf")
    for i in range(PROBE_REPEATS + 1):  # the first is a warm-up (kernel choice, AMX tiles)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        if ctx is not None:
            with ctx:
                a @ w
        else:
            a @ w
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - t0)
    return best


@functools.cache
def probe_precision(
    device_type: str, device_index: int | None, tokens: int, hidden: int
) -> tuple[float, float]:
    """(fp32 seconds, bf16-autocast seconds) of one (tokens, hidden) @ (hidden, 4 hidden)
    product on the device; cached per process, device and shape."""
    device = torch.device(device_type, device_index)
    tokens = max(1, min(tokens, PROBE_MAX_TOKENS))
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(tokens, hidden, generator=g).to(device)
    w = torch.randn(hidden, 4 * hidden, generator=g).to(device)
    fp32, bf16 = float("inf"), float("inf")
    for _ in range(2):  # interleaved, so a burst of load elsewhere hits both alike
        fp32 = min(fp32, _time_product(a, w, None, device))
        bf16 = min(bf16, _time_product(a, w, torch.bfloat16, device))
    return fp32, bf16


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """A fresh context that runs its block in ``precision`` (fp32: as is; bf16/fp16: autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_hidden_size(model: object) -> int:
    """The hidden size ``auto``'s probe is shaped by: ``config.hidden_size``, else 256."""
    return int(getattr(getattr(model, "config", None), "hidden_size", None) or 256)


def resolve_precision(
    requested: str, device: torch.device, tokens: int, hidden: int, who: str = "pretrain"
) -> PrecisionChoice:
    """The precision to run in: ``requested`` itself, or for ``auto`` the faster of fp32 and
    bf16 (autocast) for a (tokens, hidden) model on ``device``.

    Args:
        requested: fp32, bf16, fp16 or auto (``pretrain.precision``, ``serve --precision``).
        device: where the model runs.
        tokens: tokens per forward pass (batch size x block size).
        hidden: the model's hidden size.
        who: the stage or command named in the log line.
    """
    if requested != "auto":
        return PrecisionChoice(precision=requested, requested=requested)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return PrecisionChoice(precision="fp32", requested="auto")
    fp32, bf16 = probe_precision(device.type, device.index, tokens, hidden)
    choice = "bf16" if bf16 < fp32 else "fp32"
    logger.info(
        "%s: precision auto -> %s (a %dx%d @ %dx%d product: fp32 %.2f ms, bf16 %.2f ms)",
        who,
        choice,
        min(tokens, PROBE_MAX_TOKENS),
        hidden,
        hidden,
        4 * hidden,
        fp32 * 1e3,
        bf16 * 1e3,
    )
    return PrecisionChoice(choice, "auto", fp32_seconds=fp32, bf16_seconds=bf16)


# Training in bf16 on a CPU, PyTorch's fused SDPA kernel (flash attention for CPU) is slower
# than transformers' eager attention at lmforge's shapes, mostly in its backward pass (25 ms
# per layer of a 0.43 s ModernBERT NER step). Steps eager vs SDPA, 2 cores, bf16 autocast
# (`python benchmarks/modernbert_speed.py --attention`, RESULTS.md): ModernBERT MLM 16 x 128
# 1.20x faster, ModernBERT token classification 32 x 110 1.28x, bert2gpt translation 1.17x,
# GPT-2 4 x 128 at 12 x 64 1.28x, BERT 4 x 256 MLM at 32 x 128 1.06x. In fp32 SDPA is as fast
# or faster, so only bf16 switches. Eager materialises the (T x T) scores, so only sequences
# up to EAGER_MAX_TOKENS.
EAGER_MAX_TOKENS = 512


def cpu_bf16_attention(
    model: object, precision: str, device: torch.device, seq_len: int
) -> str | None:
    """Switch a transformers model (or peft's wrapper of one) from SDPA to eager attention
    for bf16 training on a CPU; returns the implementation to restore afterwards with
    ``restore_attention``, or None when nothing changed (GPU, fp32, long sequences, a model
    without the switch)."""
    base = getattr(model, "get_base_model", lambda: model)()
    config = getattr(base, "config", None)
    if (
        precision != "bf16"
        or device.type != "cpu"
        or seq_len > EAGER_MAX_TOKENS
        or getattr(config, "_attn_implementation", None) != "sdpa"
        or not hasattr(base, "set_attn_implementation")
    ):
        return None
    try:
        base.set_attn_implementation("eager")
    except (ValueError, ImportError):  # an architecture without eager attention keeps SDPA
        return None
    logger.debug("eager attention for bf16 training on the CPU")
    return "sdpa"


def restore_attention(model: object, implementation: str | None) -> None:
    """Undo ``cpu_bf16_attention`` (prediction and serving run in fp32, where SDPA is faster)."""
    if implementation is not None:
        getattr(model, "get_base_model", lambda: model)().set_attn_implementation(implementation)
