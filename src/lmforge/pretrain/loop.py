"""The pretraining loop. Reads top to bottom like nanoGPT's train.py: set-up, loop (forward,
backward, step), evaluation, checkpoint.

Exact resume: batches and MLM masks are pure functions of (seed, step, micro-step, rank)
(``sampler.py``), the learning rate a pure function of the step (``optim.lr_at``), and a
checkpoint holds weights, optimizer moments and the RNG state, so a run resumed from step
``s`` makes the same updates as one that never stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmforge.core.distributed import DistInfo, barrier, broadcast_object
from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger
from lmforge.core.metrics import MetricsLogger
from lmforge.core.precision import (
    PrecisionChoice,
    autocast_context,
    cpu_bf16_attention,
    model_hidden_size,
    resolve_precision,
    restore_attention,
)
from lmforge.core.progress import progress_bar
from lmforge.pretrain.checkpoint import (
    TrainerState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from lmforge.pretrain.config import PretrainConfig
from lmforge.pretrain.evaluate import evaluate
from lmforge.pretrain.optim import build_optimizer, lr_at
from lmforge.pretrain.parallel import full_tensor, uses_fsdp, wrap_model
from lmforge.pretrain.sampler import BatchSampler, mix_seed

# (indices, seed) -> model inputs on CPU; the objective's batch function
BatchFn = Callable[[torch.Tensor, int], dict[str, torch.Tensor]]


@dataclass
class LoopResult:
    state: TrainerState
    final_eval: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)  # per step, across resumes
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0
    resumed_from: int | None = None
    precision: PrecisionChoice | None = None  # what the run trained in ('auto' resolved)


def train(
    model: torch.nn.Module,
    cfg: PretrainConfig,
    *,
    train_batch: BatchFn,
    val_batch: BatchFn,
    num_train: int,
    num_val: int,
    tokens_per_sample: int,
    work: Path,
    device: torch.device,
    dist: DistInfo,
    seed: int,
    metrics: MetricsLogger,
    resume: bool,
    recipe_hash: str,
) -> LoopResult:
    # ---------------------------------------------------------------- set-up
    if cfg.batch_size % dist.world_size:
        raise LmforgeError(
            f"pretrain.batch_size ({cfg.batch_size}) must be divisible by the {dist.world_size} processes"
        )
    if cfg.precision == "fp16" and device.type != "cuda":
        raise LmforgeError("pretrain.precision: fp16 needs a CUDA GPU; use bf16 on CPU")
    hidden = model_hidden_size(model)
    choice = resolve_precision(cfg.precision, device, cfg.batch_size * tokens_per_sample, hidden)
    choice = broadcast_object(choice)  # auto: every process trains in rank 0's choice
    precision = choice.precision
    attention = cpu_bf16_attention(model, precision, device, tokens_per_sample)
    model.to(device)
    raw_model = model
    fsdp = uses_fsdp(cfg)
    model = wrap_model(model, cfg, device, dist)  # before the optimizer: FSDP swaps parameters
    optimizer = build_optimizer(raw_model, cfg, device)
    # fused AdamW skips a step on the device when told to: no host sync to check the loss
    skip_on_device = getattr(optimizer, "_step_supports_amp_scaling", False)
    ckpt_root = work / "checkpoints"
    state = TrainerState(recipe_hash=recipe_hash)
    resumed_from = None
    if resume and (last := latest_checkpoint(ckpt_root)) is not None:
        state = load_checkpoint(last, raw_model, optimizer, device, fsdp=fsdp)
        if state.recipe_hash and state.recipe_hash != recipe_hash:
            raise LmforgeError(
                f"checkpoint {last} was written by a different recipe; run without --resume"
            )
        resumed_from = state.step
        logger.info("pretrain: resumed from %s (step %d)", last.name, state.step)
    if cfg.compile:
        model = torch.compile(model)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    # we tell fused AdamW when to skip, unless the fp16 scaler does (it sets found_inf itself)
    mark_skip = skip_on_device and not scaler.is_enabled()
    amp = autocast_context(precision, device)
    sampler = BatchSampler(num_train, cfg.batch_size, cfg.grad_accum, seed)
    tokens_per_step = cfg.batch_size * cfg.grad_accum * tokens_per_sample
    writer = _tensorboard(work, cfg) if dist.is_main else None
    history_path = work / "history.jsonl"
    history = _restore_history(history_path, state.step) if dist.is_main else []
    final_eval: dict[str, float] = {}
    # steps whose loss and gradient norm are still on the device: read back together every
    # log_every steps, so the host never waits for the accelerator in between
    pending: list[tuple[dict[str, Any], torch.Tensor]] = []
    shown = "loss -"

    def run_eval() -> dict[str, float]:
        model.eval()
        with amp:
            values = evaluate(model, val_batch, num_val, cfg, device, dist, seed)
        model.train()
        return values

    def flush(values: list[list[float]]) -> None:
        """Count non-finite steps and log the pending steps, given their values read back."""
        nonlocal shown
        for (record, _), (loss, norm) in zip(pending, values, strict=True):
            record = {"step": record["step"], "loss": loss, **record}
            if math.isfinite(loss):
                state.nonfinite_streak = 0
                if cfg.grad_clip > 0:
                    record["grad_norm"] = norm
            else:
                state.nonfinite_streak += 1
                state.skipped_steps += 1
                logger.warning(
                    "pretrain: non-finite loss at step %d, step skipped", record["step"] - 1
                )
                if state.nonfinite_streak >= cfg.max_nonfinite:
                    raise LmforgeError(
                        f"pretraining diverged: {state.nonfinite_streak} non-finite losses in a row at "
                        f"step {record['step'] - 1}; lower pretrain.lr (now {cfg.lr:g}) or use "
                        "precision fp32/bf16"
                    )
            history.append(record)
            if dist.is_main:
                with history_path.open("a") as f:  # appended as read back: survives a crash
                    f.write(json.dumps(record) + "\n")
                metrics.log_dict(
                    "pretrain",
                    {k: v for k, v in record.items() if k != "step"},
                    step=record["step"],
                )
                if writer is not None:
                    for k, v in record.items():
                        if k != "step":
                            writer.add_scalar(f"pretrain/{k}", v, record["step"])
            shown = f"loss {loss:.3f}"
        pending.clear()

    # ---------------------------------------------------------------- loop
    model.train()
    start_step, t_start = state.step, time.perf_counter()
    nan = torch.full((), float("nan"), device=device)
    with progress_bar("pretrain", cfg.max_steps) as advance:
        advance(state.step)
        while state.step < cfg.max_steps:
            step = state.step
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                idx = sampler.indices(step, micro, dist.rank, dist.world_size)
                batch = {
                    k: v.to(device, non_blocking=True)
                    for k, v in train_batch(idx, mix_seed(seed, step, micro, dist.rank)).items()
                }
                # all-reduce (DDP) or reduce-scatter (FSDP) gradients on the last micro-step only
                sync = micro == cfg.grad_accum - 1
                if fsdp:
                    raw_model.set_requires_gradient_sync(sync)
                no_sync = not sync and dist.enabled and not fsdp
                with model.no_sync() if no_sync else contextlib.nullcontext(), amp:
                    loss = model(**batch).loss / cfg.grad_accum
                scaler.scale(loss).backward()
                loss_sum += loss.detach()
            if dist.enabled:
                torch.distributed.all_reduce(loss_sum, op=torch.distributed.ReduceOp.AVG)
            finite = torch.isfinite(loss_sum)
            grad_norm = nan
            # optimizers without an on-device skip (LAMB) read the check on the host
            if skip_on_device or finite.item():
                scaler.unscale_(optimizer)
                if cfg.grad_clip > 0:
                    grad_norm = full_tensor(
                        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
                    )
                if mark_skip:
                    optimizer.grad_scale, optimizer.found_inf = None, (~finite).float()
                scaler.step(optimizer)
                scaler.update()
                if mark_skip:
                    del optimizer.grad_scale, optimizer.found_inf
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.tokens += tokens_per_step

            # ------------------------------------------------------------ logging and eval
            record: dict[str, Any] = {"step": state.step, "lr": lr}
            pending.append((record, torch.stack([loss_sum, grad_norm.float()])))
            last = state.step == cfg.max_steps
            evaluating = state.step % cfg.eval_every == 0 or last
            checkpointing = state.step % cfg.checkpoint_every == 0 or last
            reading = state.step % cfg.log_every == 0 or evaluating or checkpointing
            # the one host sync of this stretch of steps: waits for the device to finish them,
            # so the time taken after it is exact (between reads, it is the host's time)
            values = torch.stack([v for _, v in pending]).tolist() if reading else []
            elapsed = time.perf_counter() - t_start
            tps = (state.step - start_step) * tokens_per_step / max(elapsed, 1e-9)
            record["tokens_per_second"] = tps
            if evaluating:
                final_eval = run_eval()
                record.update({f"val_{k}": v for k, v in final_eval.items()})
            if reading:
                flush(values)
            advance(1, f"{shown}  lr {lr:.2e}  {tps:,.0f} tok/s")

            # ------------------------------------------------------------ checkpoint
            if checkpointing:
                save_checkpoint(
                    ckpt_root,
                    raw_model,
                    optimizer,
                    state,
                    cfg.keep_checkpoints,
                    fsdp=fsdp,
                    is_main=dist.is_main,
                )
                barrier()

    seconds = time.perf_counter() - t_start
    if writer is not None:
        writer.close()
    if not final_eval:  # resumed after the last step: evaluate the restored model
        final_eval = run_eval()
    check_finite_result(raw_model, final_eval, cfg, dist)
    restore_attention(raw_model, attention)
    return LoopResult(
        state=state,
        final_eval=final_eval,
        history=history,
        train_seconds=seconds,
        tokens_per_second=(state.step - start_step) * tokens_per_step / max(seconds, 1e-9),
        resumed_from=resumed_from,
        precision=choice,
    )


def check_finite_result(
    model: torch.nn.Module, final_eval: dict[str, float], cfg: PretrainConfig, dist: DistInfo
) -> None:
    """Fail a run whose final weights or validation loss are not finite.

    Single non-finite steps are skipped and ``max_nonfinite`` in a row stop the run, but an
    update can overflow the weights at the end of a run (or an absurd lr on a short one)
    with fewer bad losses than that left to see; saving such a model as "done" would report
    the last finite loss for a model that only outputs NaN. One host read, after the loop.

    Raises:
        LmforgeError: naming the first non-finite parameter or the loss, and what to change.
    """
    params = [(n, p.detach()) for n, p in model.named_parameters()]
    # FSDP: each rank checks its own shards, and the all-reduce tells every rank
    local = [p.to_local() if hasattr(p, "to_local") else p for _, p in params]
    bad = torch.stack([~torch.isfinite(p).all() for p in local]) if local else None
    flags = torch.zeros(2, device=local[0].device if local else "cpu")
    if bad is not None:
        flags[0] = bad.any()
    flags[1] = not math.isfinite(final_eval.get("loss", 0.0))
    if dist.enabled:
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    weights_bad, loss_bad = (bool(f) for f in flags.cpu())
    if not (weights_bad or loss_bad):
        return
    what = "the final validation loss is not finite"
    if weights_bad:
        first = next((n for (n, _), b in zip(params, bad.cpu(), strict=True) if b), None)
        where = f" ({first} first)" if first else " (on another process)"
        what = f"the final weights are not finite{where}"
    raise LmforgeError(
        f"pretraining diverged: {what}, so the model is unusable; lower pretrain.lr "
        f"(now {cfg.lr:g}) or use precision fp32/bf16, and rerun without --resume (the last "
        "checkpoint holds the same weights)"
    )


def _restore_history(path: Path, step: int) -> list[dict[str, Any]]:
    """Per-step records up to ``step`` (the checkpoint resumed from); later ones are redone."""
    kept = []
    if step and path.exists():
        kept = [r for r in map(json.loads, path.read_text().splitlines()) if r["step"] <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _tensorboard(work: Path, cfg: PretrainConfig):  # noqa: ANN202 - SummaryWriter is optional
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        logger.warning("tensorboard is not installed; metrics go to metrics.jsonl only")
        return None
    return SummaryWriter(log_dir=str(work / "tensorboard"))
