"""Measured compute ceilings, the denominator of model-FLOPs utilisation (MFU).

Vendor peak numbers do not exist for most CPUs and overstate what PyTorch reaches, so the peak
is measured: the best of a few large square matmuls in the training dtype.
"""

from __future__ import annotations

import time

import torch


def select_device(choice: str = "auto") -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return torch.device("cpu")


def stage_device(choice: str, key: str) -> torch.device:
    """The device a stage runs its model on (``key``: the recipe field, e.g. finetune.device),
    logged so a user with a GPU sees whether it is used.

    Raises:
        LmforgeError: ``cuda`` was asked for and no CUDA GPU is available.
    """
    from lmforge.core.errors import LmforgeError
    from lmforge.core.log import logger

    device = select_device(choice)
    if choice == "cuda" and not torch.cuda.is_available():
        raise LmforgeError(f"{key}: cuda requested but no CUDA GPU is available")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    logger.info("%s: %s (%s, %s)", key.split(".")[0], device, name, f"{key}={choice}")
    return device


def matmul_peak_flops(
    dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 5
) -> float:
    """FLOP/s of the fastest of ``repeats`` (n x n) @ (n x n) products (2 n^3 FLOPs each)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: kernels, caches, AMX tiles
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best
