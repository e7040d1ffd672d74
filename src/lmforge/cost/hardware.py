"""Hardware presets for cost planning: peak compute, memory, bandwidth, power and price.

GPU numbers are the vendors' data-sheet figures for the SXM boards: dense bf16 tensor-core
FLOP/s (without 2:4 sparsity, which training does not use), HBM size and bandwidth, and the
board's maximum power (TDP). Prices are assumptions, not quotes: on-demand cloud prices for one
device vary two- to three-fold between providers, so every figure derived from them says which
price it used and ``--price`` replaces it.

``cpu`` is this machine, measured rather than looked up: CPUs have no meaningful vendor peak
for PyTorch, so its peak is the best matmul rate in fp32 or bf16 (``matmul_peak_flops``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

from lmforge.core.registry import Registry

GB = 1e9  # memory sizes are decimal gigabytes, as in the data sheets and the ZeRO paper


@dataclass(frozen=True)
class Hardware:
    """One device (a GPU, or the whole CPU machine) as the cost model sees it."""

    name: str
    peak_flops: float  # dense bf16 FLOP/s per device
    memory_bytes: float  # device memory (HBM, or RAM for the CPU)
    bandwidth: float  # memory bandwidth, bytes/s (bounds token-by-token decoding)
    watts: float  # board power at full load (TDP), the energy estimate's draw
    price: float  # assumed USD per device-hour
    typical_mfu: float  # MFU assumed when none is given
    description: str
    measured: bool = False  # True when the numbers come from this machine
    price_given: bool = False  # False: ``price`` is the preset's assumption
    watts_given: bool = False

    def with_overrides(self, price: float | None = None, watts: float | None = None) -> Hardware:
        """The same device at a stated price and/or power draw."""
        hw = self if price is None else replace(self, price=price, price_given=True)
        return hw if watts is None else replace(hw, watts=watts, watts_given=True)


# MFU reached by large, well-tuned training jobs: 46% PaLM 540B (Chowdhery et al. 2022,
# table 3), 38-43% Llama 3 405B (Dubey et al. 2024, table 4); smaller jobs reach less.
GPU_MFU = 0.40
# Measured in this project: tiny models reach 20-25% of the CPU's fp32 matmul peak.
CPU_MFU = 0.20

HARDWARE: Registry[Hardware] = Registry("hardware preset")
for _hw in (
    Hardware(
        "a100",
        peak_flops=312e12,
        memory_bytes=80 * GB,
        bandwidth=2.039e12,
        watts=400,
        price=1.80,
        typical_mfu=GPU_MFU,
        description="NVIDIA A100 SXM4 80 GB: 312 TFLOP/s bf16 dense, 2.0 TB/s, 400 W",
    ),
    Hardware(
        "h100",
        peak_flops=989e12,
        memory_bytes=80 * GB,
        bandwidth=3.35e12,
        watts=700,
        price=3.00,
        typical_mfu=GPU_MFU,
        description="NVIDIA H100 SXM5 80 GB: 989 TFLOP/s bf16 dense, 3.35 TB/s, 700 W",
    ),
    Hardware(
        "h200",
        peak_flops=989e12,
        memory_bytes=141 * GB,
        bandwidth=4.8e12,
        watts=700,
        price=3.80,
        typical_mfu=GPU_MFU,
        description="NVIDIA H200 SXM 141 GB: 989 TFLOP/s bf16 dense, 4.8 TB/s, 700 W",
    ),
):
    HARDWARE.add(_hw.name, _hw)

CPU = "cpu"
CPU_WATTS = 100.0  # assumed: a CPU's draw is not measured here; pass --watts
CPU_PRICE = 0.10  # assumed USD per machine-hour


def preset_names() -> list[str]:
    """Every name ``--hardware`` accepts, GPUs first."""
    return [*HARDWARE.names(), CPU]


def get_hardware(name: str, cpu_peak_flops: float | None = None) -> Hardware:
    """The preset called ``name`` (case-insensitive); ``cpu`` measures this machine.

    Args:
        cpu_peak_flops: for ``cpu``, a peak measured earlier (a run's ``peak_flops``) instead
            of measuring again.

    Raises:
        LmforgeError: for an unknown name, listing the valid ones.
    """
    key = name.strip().lower()
    if key == CPU:
        return measure_cpu(cpu_peak_flops)
    if key not in HARDWARE:
        from lmforge.core.errors import LmforgeError

        raise LmforgeError(
            f"unknown hardware preset {name!r}; valid presets: {', '.join(preset_names())}"
        )
    return HARDWARE.get(key)


def measure_cpu(peak_flops: float | None = None) -> Hardware:
    """This machine: best matmul FLOP/s (fp32 or bf16), total RAM, and a copy's bandwidth."""
    import torch

    from lmforge.core.hardware import matmul_peak_flops

    cpu = torch.device("cpu")
    if peak_flops is None:
        peak_flops = max(
            matmul_peak_flops(torch.float32, cpu, n=1024, repeats=3),
            matmul_peak_flops(torch.bfloat16, cpu, n=1024, repeats=3),
        )
    memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return Hardware(
        CPU,
        peak_flops=peak_flops,
        memory_bytes=memory,
        bandwidth=_copy_bandwidth(),
        watts=CPU_WATTS,
        price=CPU_PRICE,
        typical_mfu=CPU_MFU,
        description=(
            f"this machine's CPU ({os.cpu_count()} logical cores): "
            f"{peak_flops / 1e12:.2f} TFLOP/s measured matmul peak, {memory / GB:.0f} GB RAM"
        ),
        measured=True,
    )


def _copy_bandwidth(megabytes: int = 64) -> float:
    """Bytes/s moved by copying a tensor (each byte read once and written once)."""
    import torch

    src = torch.empty(megabytes * 2**20, dtype=torch.uint8)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up: page faults
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() / best
