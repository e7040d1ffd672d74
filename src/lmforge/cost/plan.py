"""``lmforge cost``: one planning answer from a model size, a token count and a device.

Kept out of ``lmforge.cli`` so the command line stays a thin table; the numbers come from
``training``, ``memory`` and ``inference`` in this package.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.cost.hardware import GB, Hardware, get_hardware
from lmforge.cost.inference import InferenceCost, inference_cost
from lmforge.cost.memory import STRATEGIES, TrainingMemory, training_memory
from lmforge.cost.training import (
    GRID_G_PER_KWH,
    ModelShape,
    TrainingCost,
    chinchilla_tokens,
    model_shape_from_config,
    training_cost,
)

SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(text: str | float, flag: str) -> float:
    """``7e9``, ``6.74B``, ``300b``, ``1.4T``, ``125M`` -> a positive number.

    Raises:
        LmforgeError: naming ``flag`` when the value is not a positive number.
    """
    raw = str(text).strip().replace(",", "").replace("_", "")
    match = re.fullmatch(r"([-+]?[0-9.]+(?:e[-+]?[0-9]+)?)\s*([kmbgt]?)", raw, flags=re.I)
    try:
        value = float(match.group(1)) * SUFFIXES.get(match.group(2).lower(), 1) if match else None
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        raise LmforgeError(f"{flag}: {text!r} is not a number; write e.g. 7e9, 6.7B or 1.4T")
    _positive(value, flag)
    return value


def _positive(value: float | None, flag: str) -> None:
    if value is not None and not value > 0:
        raise LmforgeError(f"{flag} must be greater than zero (got {value:g})")


@dataclass(frozen=True)
class CostPlan:
    shape: ModelShape
    tokens: float
    tokens_given: bool
    chinchilla_tokens: float
    training: TrainingCost
    memory: list[TrainingMemory]
    micro_batch: int
    precision: str
    inference: InferenceCost
    weight_bits: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["flops"] = self.training.flops
        return data


def plan_cost(
    params: float | None,
    tokens: float | None = None,
    hardware: str = "a100",
    devices: int = 1,
    mfu: float | None = None,
    price: float | None = None,
    seq_len: int = 2048,
    layers: int | None = None,
    hidden: int | None = None,
    model: Path | None = None,
    pue: float = 1.0,
    grid: float = GRID_G_PER_KWH,
    watts: float | None = None,
    micro_batch: int = 1,
    precision: str = "mixed",
    strategies: list[str] | None = None,
    batch: int = 32,
    weight_bits: int = 16,
) -> CostPlan:
    """Everything ``lmforge cost`` prints; every size is checked before any arithmetic.

    Raises:
        LmforgeError: a size that is zero or negative, an MFU outside (0, 1], an unknown
            hardware preset or strategy (listing the valid ones).
    """
    for value, flag in [
        (params, "--params"),
        (tokens, "--tokens"),
        (devices, "--devices"),
        (seq_len, "--seq-len"),
        (layers, "--layers"),
        (hidden, "--hidden"),
        (price, "--price"),
        (pue, "--pue"),
        (watts, "--watts"),
        (micro_batch, "--micro-batch"),
        (batch, "--batch"),
        (weight_bits, "--weight-bits"),
    ]:
        _positive(value, flag)
    if grid < 0:
        raise LmforgeError(f"--grid-intensity must be zero or more gCO2/kWh (got {grid:g})")
    if mfu is not None and not 0 < mfu <= 1:
        raise LmforgeError(f"--mfu is a fraction of the peak in (0, 1] (got {mfu:g})")
    strategies = strategies or ["ddp", "zero1", "zero2", "zero3"]
    for s in strategies:
        if s not in STRATEGIES:
            raise LmforgeError(f"unknown strategy {s!r}; valid strategies: {', '.join(STRATEGIES)}")
    if precision not in ("mixed", "fp32"):
        raise LmforgeError(f"--precision must be mixed or fp32 (got {precision!r})")
    shape = _shape(params, seq_len, layers, hidden, model)
    hw: Hardware = get_hardware(hardware).with_overrides(price=price, watts=watts)
    d = tokens if tokens is not None else chinchilla_tokens(shape.params)
    return CostPlan(
        shape=shape,
        tokens=d,
        tokens_given=tokens is not None,
        chinchilla_tokens=chinchilla_tokens(shape.params),
        training=training_cost(shape.flops_per_token() * d, d, hw, devices, mfu, pue, grid),
        memory=[training_memory(shape, devices, s, precision, micro_batch) for s in strategies],
        micro_batch=micro_batch,
        precision=precision,
        inference=inference_cost(shape, hw, batch, weight_bits, mfu),
        weight_bits=weight_bits,
    )


def _shape(
    params: float | None, seq_len: int, layers: int | None, hidden: int | None, model: Path | None
) -> ModelShape:
    if model is not None:
        config_file = Path(model) / "config.json"
        if not config_file.is_file():
            raise LmforgeError(
                f"--model: {model} has no config.json; give a saved model directory "
                "(e.g. RUN/pretrain/model) or --params"
            )
        from transformers import AutoConfig

        shape = model_shape_from_config(AutoConfig.from_pretrained(model), seq_len)
        return shape if params is None else ModelShape(params, shape.layers, shape.hidden, seq_len)
    if params is None:
        raise LmforgeError("give the model size with --params N (e.g. 7e9), or --model DIR")
    return ModelShape.from_params(params, seq_len, layers, hidden)


# ---------------------------------------------------------------- text output


def si(value: float, unit: str = "") -> str:
    """``3.14e23`` style for huge counts, thousands separators below a billion."""
    if value >= 1e9:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}{unit}"
    return f"{value:,.0f}{unit}" if value >= 100 else f"{value:.3g}{unit}"


def duration(hours: float) -> str:
    if hours < 1 / 3600:
        return f"{hours * 3.6e6:.3g} ms"
    if hours < 1 / 60:
        return f"{hours * 3600:.1f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    if hours < 24 * 730:
        return f"{hours / 24:,.1f} days"
    return f"{hours / 24 / 365:,.1f} years"


def gb(value: float) -> str:
    return f"{value / GB:,.1f} GB" if value >= 0.1 * GB else f"{value / 1e6:,.1f} MB"


def format_plan(plan: CostPlan) -> str:
    """The human-readable answer, every assumption stated next to the number it drives."""
    s, t, hw = plan.shape, plan.training, plan.training.hardware
    how = "given" if plan.tokens_given else "Chinchilla-optimal, 20 x N; --tokens to set"
    shape_note = "estimated from N; --layers/--hidden to set" if s.estimated else "given"
    attn = s.attention_flops_per_token() * plan.tokens
    lines = [
        f"model       {si(s.params)} parameters, {s.layers} layers x {s.hidden} hidden "
        f"({shape_note}), sequence {s.seq_len:,}",
        f"tokens      {si(plan.tokens)} ({how}); Chinchilla-optimal for this size: "
        f"{si(plan.chinchilla_tokens)}",
        f"compute     {si(t.flops)} FLOPs = 6·N·D {si(6 * s.params * plan.tokens)} "
        f"+ attention 12·L·d·T·D {si(attn)}",
        f"hardware    {hw.name}: {hw.description}",
        f"            {t.devices} device(s) at MFU {t.mfu:.2f} "
        f"({t.mfu * hw.peak_flops / 1e12:,.3g} TFLOP/s achieved per device)",
        f"time        {si(t.device_hours)} device-hours; wall time {duration(t.wall_hours)} "
        f"on {t.devices} device(s)",
        f"price       ${si(t.price_usd)} at ${hw.price:.2f}/device-hour"
        + ("" if hw.price_given else " (assumed; --price to set)"),
        f"energy      {si(t.energy_kwh)} kWh ({hw.watts:g} W per device"
        f"{_watts_note(hw)} x PUE {t.pue:g}); "
        f"CO2 {si(t.co2_kg / 1000)} t at {t.grid_g_per_kwh:g} g/kWh",
        "",
        f"training memory per device ({plan.precision} precision with Adam, "
        f"micro-batch {plan.micro_batch} x {s.seq_len:,} tokens, {t.devices} device(s); "
        f"{gb(hw.memory_bytes)} available)",
        f"  {'strategy':<9}{'weights':>11}{'grads':>11}{'optimizer':>11}{'activations':>13}"
        f"{'total':>11}{'checkpointed':>14}",
    ]
    for m in plan.memory:
        fits = "" if m.total_checkpointed <= hw.memory_bytes else "  (does not fit)"
        lines.append(
            f"  {m.strategy:<9}{gb(m.weights):>11}{gb(m.gradients):>11}{gb(m.optimizer):>11}"
            f"{gb(m.activations):>13}{gb(m.total):>11}{gb(m.total_checkpointed):>14}{fits}"
        )
    i = plan.inference
    lines += [
        "",
        f"inference   {plan.weight_bits}-bit weights {gb(i.weight_bytes)}, batch {i.batch} at "
        f"context {s.seq_len:,} (KV cache {gb(i.kv_cache_bytes)}): {i.devices} device(s) per "
        "replica",
        f"            prompt {si(i.prefill_tokens_per_second)} tokens/s -> "
        f"${i.usd_per_million_input:.3g} per million input tokens",
        f"            output {si(i.decode_tokens_per_second)} tokens/s ({i.decode_bound}-bound) "
        f"-> ${i.usd_per_million_output:.3g} per million output tokens",
    ]
    return "\n".join(lines)


def _watts_note(hw: Hardware) -> str:
    if hw.watts_given:
        return ""
    return " (assumed; --watts to set)" if hw.measured else " (TDP; --watts to set)"


def format_json(plan: CostPlan) -> str:
    return json.dumps(plan.to_json(), indent=2)
