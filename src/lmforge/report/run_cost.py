"""The report's cost section: what the run measured (time, tokens, FLOPs) and what repeating
its training would take on each hardware preset, with the formulas of ``lmforge cost``."""

from __future__ import annotations

import math

from lmforge.cost.hardware import CPU_PRICE, CPU_WATTS, HARDWARE
from lmforge.cost.plan import duration
from lmforge.cost.training import GRID_G_PER_KWH, training_cost
from lmforge.report.blocks import Block, Section, Table, fmt
from lmforge.report.run import RunView


def cost_section(run: RunView) -> Section | None:
    stages = [run.stage(n) for n in run.stage_names]
    stages = [s for s in stages if s.status not in ("skipped", "not run")]
    if not stages:
        return None
    rows = []
    total_flops = total_tokens = 0.0
    for s in stages:
        m = s.metrics
        tokens = m.get("tokens") if _number(m.get("tokens")) else None
        flops = (
            float(m["flops_per_token"]) * tokens
            if tokens is not None and _number(m.get("flops_per_token"))
            else None
        )
        seconds = m.get("train_seconds") if _number(m.get("train_seconds")) else s.seconds
        achieved = flops / seconds if flops and seconds else None
        total_flops += flops or 0.0
        total_tokens += tokens if flops else 0.0
        rows.append(
            [
                s.name + (" (reused)" if s.entry.get("cached") else ""),
                fmt(s.seconds) if s.seconds is not None else "",
                fmt(tokens) if tokens is not None else "",
                fmt(flops) if flops else "",
                f"{achieved / 1e9:,.3g}" if achieved else "",
                f"{100 * m['mfu']:.2f}%" if _number(m.get("mfu")) else "",
            ]
        )
    blocks: list[Block] = [
        Table(
            ["stage", "wall time (s)", "tokens trained", "training FLOPs", "GFLOP/s", "MFU"],
            rows,
            "Measured in this run",
            "FLOPs = (6·N + 12·L·d·T) per token × tokens, N the weights used in matmuls. Only "
            "pretraining counts its FLOPs; the other stages are timed.",
        )
    ]
    if total_flops > 0:
        blocks.append(_repeat_table(total_flops, total_tokens, _measured(run)))
    return Section("cost", "Cost", blocks, "", "")


def _measured(run: RunView) -> list[str] | None:
    """The pretraining as it ran here: its own time and MFU; on a CPU, at the CPU preset's
    assumed price and power (a GPU's draw and price are unknown here, so left blank)."""
    m = run.stage("pretrain").metrics
    if not (_number(m.get("train_seconds")) and _number(m.get("peak_flops"))):
        return None
    processes = m.get("processes") if _number(m.get("processes")) else 1
    hours = m["train_seconds"] / 3600
    mfu = f"{m['mfu']:.2%} (measured)" if _number(m.get("mfu")) else ""
    row = [
        f"this run: {processes} process(es), {m['peak_flops'] / 1e12:.3g} TFLOP/s measured peak",
        mfu,
        duration(hours),
        "",
        "",
        "",
    ]
    if _on_cpu(run):
        kwh = hours * processes * CPU_WATTS / 1000
        row[3] = f"${hours * CPU_PRICE:,.4g} at ${CPU_PRICE:.2f}/h"
        row[4] = f"{kwh * 1000:,.4g} Wh at {CPU_WATTS:g} W"
        row[5] = f"{kwh * GRID_G_PER_KWH:,.4g} g"
    return row


def _on_cpu(run: RunView) -> bool:
    device = run.stage("pretrain").config.get("device")
    versions = run.recipe.get("versions") if isinstance(run.recipe.get("versions"), dict) else {}
    return device == "cpu" or "+cpu" in str(versions.get("torch", ""))


def _repeat_table(flops: float, tokens: float, measured: list[str] | None) -> Block:
    rows = [measured] if measured else []
    for name in HARDWARE.names():
        c = training_cost(flops, tokens, HARDWARE.get(name))
        hw = c.hardware
        rows.append(
            [
                hw.description,
                f"{c.mfu:.0%}",
                duration(c.device_hours),
                f"${c.price_usd:,.4g} at ${hw.price:.2f}/h",
                f"{c.energy_kwh * 1000:,.4g} Wh",
                f"{c.co2_kg * 1000:,.4g} g",
            ]
        )
    return Table(
        ["hardware (1 device)", "MFU assumed", "time", "price (assumed)", "energy", "CO₂"],
        rows,
        f"Repeating this run's training ({fmt(flops)} FLOPs)",
        f"At the MFU large jobs reach (small models reach less); board power only (PUE 1), "
        f"{GRID_G_PER_KWH:g} gCO₂/kWh. Plan other sizes with `lmforge cost`.",
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
