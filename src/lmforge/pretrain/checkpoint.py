"""Resumable training checkpoints, written atomically.

A checkpoint is a directory ``step-00000100/`` holding

- ``model.safetensors``  the weights (``safetensors.torch.save_model`` handles tied tensors),
- ``optimizer.pt``       optimizer state: tensors and numbers only, read back with
                         ``torch.load(weights_only=True)`` so a foreign file cannot run code,
- ``rng.pt``             torch (and CUDA) RNG states, same safe format,
- ``trainer_state.json`` step, tokens seen, non-finite counters, recipe hash.

It is written to a temporary directory and renamed into place, so a crash (even ``kill -9``
mid-save) leaves either the previous checkpoints or a complete new one, never a torn one.
The learning-rate schedule is a pure function of the step and batches are a pure function of
(seed, step), so the step is the whole data position.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from lmforge.core.atomic import atomic_dir
from lmforge.core.errors import LmforgeError
from lmforge.pretrain.parallel import gather_state, scatter_state

STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    step: int = 0  # optimizer steps completed
    tokens: int = 0  # training tokens processed (all processes)
    nonfinite_streak: int = 0
    skipped_steps: int = 0
    recipe_hash: str = ""


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary and half-renamed dirs are ignored)."""
    if not root.exists():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists())


def latest_checkpoint(root: Path) -> Path | None:
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def save_checkpoint(
    root: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    keep: int,
    *,
    fsdp: bool = False,
    is_main: bool = True,
) -> Path:
    """Rank 0 writes; under FSDP every rank must call (gathering the shards is a collective)."""
    final = root / f"step-{state.step:08d}"
    if fsdp:
        weights, optim = gather_state(model, optimizer)
    if not is_main:
        return final
    with atomic_dir(final) as tmp:
        if fsdp:
            save_file(weights, str(tmp / "model.safetensors"))
        else:
            save_model(model, str(tmp / "model.safetensors"))
        torch.save(optim if fsdp else optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for junk in root.glob(".tmp-step-*"):  # left by a crash mid-save
        shutil.rmtree(junk, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    fsdp: bool = False,
) -> TrainerState:
    """Restore model, optimizer and RNG in place; returns the trainer state.

    Under FSDP every rank reads the full files and keeps its own shards.
    """
    try:
        state = TrainerState(**json.loads((path / STATE_FILE).read_text()))
        optim = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
        if fsdp:
            scatter_state(model, load_file(path / "model.safetensors"), optimizer, optim)
        else:
            missing, unexpected = load_model(
                model, str(path / "model.safetensors"), strict=False, device=str(device)
            )
            if unexpected or missing:
                raise LmforgeError(
                    f"checkpoint {path} does not match the model (missing {sorted(missing)[:3]}, "
                    f"unexpected {sorted(unexpected)[:3]}); was it written by another recipe?"
                )
            optimizer.load_state_dict(optim)
        rng = torch.load(path / "rng.pt", weights_only=True)
    except LmforgeError:
        raise
    except Exception as e:  # torn, foreign or unsafe files: unpickling errors included
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LmforgeError(f"cannot resume from checkpoint {path}: {first_line}") from None
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state
