"""Seeding every random number generator a run touches."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency, but stay importable
        return
    torch.manual_seed(seed)
