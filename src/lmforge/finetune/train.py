"""The fine-tuning loop: epochs over shuffled mini-batches, AdamW with linear warm-up and
decay (the BERT fine-tuning recipe), gradient clipping, validation loss after each epoch.

``group_by_length`` batches examples of similar length together (transformers' Trainer
option of that name): each epoch shuffles, cuts the order into mega-batches of 50 batches,
sorts each by length and shuffles the resulting batches, so a batch pads to a near-equal
length while the data order stays random at the scale of an epoch."""

from __future__ import annotations

import math
from typing import Any

import torch

from lmforge.core.errors import LmforgeError
from lmforge.core.precision import (
    EAGER_MAX_TOKENS,
    autocast_context,
    cpu_bf16_attention,
    restore_attention,
)
from lmforge.core.progress import progress_bar
from lmforge.pretrain.optim import param_groups


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """Multiplier of the peak learning rate: 0 -> 1 over ``warmup`` steps, then -> 0."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@torch.no_grad()
def mean_loss(model: Any, data: Any, batch_size: int, device: torch.device) -> float:
    model.eval()
    total, n = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        batch = {k: v.to(device) for k, v in data.batch(idx).items()}
        total += model(**batch).loss.item() * len(idx)
        n += len(idx)
    return total / max(n, 1)


MEGABATCH = 50  # batches per sorted group (Trainer's LengthGroupedSampler uses 50 too)


def feature_length(feature: dict[str, Any]) -> int:
    """The padded length an example forces on its batch: its longest token list (source ids,
    or a translation's target ids)."""
    return max((len(v) for v in feature.values() if isinstance(v, list)), default=1)


def epoch_batches(
    n: int, batch_size: int, generator: torch.Generator, lengths: list[int] | None = None
) -> list[list[int]]:
    """One epoch's batches of example indices: a random order, length-grouped when
    ``lengths`` is given (see the module doc). Both give ceil(n / batch_size) batches."""
    order = torch.randperm(n, generator=generator).tolist()
    if lengths is None:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    batches: list[list[int]] = []
    mega = batch_size * MEGABATCH
    for start in range(0, n, mega):
        group = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def fit(
    model: Any,
    train: Any,
    val: Any | None,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    grad_clip: float = 1.0,
    device: torch.device | None = None,
    precision: str = "fp32",
    group_by_length: bool = False,
    keep_best: bool = False,
) -> list[dict[str, float]]:
    """Train in place; returns one record per epoch (train loss, val loss).

    ``precision`` bf16 runs the forward pass under autocast (mixed precision: the weights,
    gradients and AdamW states stay fp32); validation runs in fp32. ``group_by_length``
    batches examples of similar length (less padding; see the module doc). ``keep_best``
    ends with the trainable weights of the epoch :func:`best_epoch` names (transformers'
    ``load_best_model_at_end`` on the validation loss): a small labelled set often overfits
    in the last epochs.

    Raises:
        LmforgeError: an epoch's loss or the trained parameters are not finite (the learning
            rate is too high, or the data overflows the model): such a model only outputs
            NaN, and scoring it would report an accuracy for constant predictions.
    """
    device = device or torch.device("cpu")
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    steps_per_epoch = -(-len(train) // batch_size)
    total = epochs * steps_per_epoch
    warmup = int(warmup_ratio * total)
    history, step = [], 0
    best: dict[str, torch.Tensor] = {}  # trainable weights of the best epoch so far
    amp = autocast_context(precision, device)
    # an ``Encoded`` text split knows its examples' lengths; images, or any other data (``len``
    # + ``batch``), train in random batches with the model's own attention (measured on text)
    features = getattr(train, "features", None) or []
    text = bool(features) and "input_ids" in features[0]
    all_lengths = [feature_length(f) for f in features] if text else []
    lengths = all_lengths if group_by_length and all_lengths else None
    longest = max(all_lengths) if all_lengths else EAGER_MAX_TOKENS + 1
    attention = cpu_bf16_attention(model, precision, device, longest)
    with progress_bar("fine-tune", total) as advance:
        for epoch in range(epochs):
            model.train()
            generator = torch.Generator().manual_seed(seed + epoch)
            running = 0.0
            for idx in epoch_batches(len(train), batch_size, generator, lengths):
                batch = {k: v.to(device) for k, v in train.batch(idx).items()}
                for group in optimizer.param_groups:
                    group["lr"] = lr * linear_schedule(step, total, warmup)
                with amp:
                    loss = model(**batch).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(
                        [p for p in model.parameters() if p.requires_grad], grad_clip
                    )
                optimizer.step()
                # AdaLoRA: importance scores and the rank budget, from this step's gradients
                if hasattr(getattr(model, "base_model", None), "update_and_allocate"):
                    model.base_model.update_and_allocate(step)
                running += loss.item() * len(idx)
                step += 1
                advance(1, f"epoch {epoch + 1}/{epochs}  loss {loss.item():.3f}")
            record = {"epoch": epoch + 1, "train_loss": running / len(train)}
            if val is not None and len(val):
                record["val_loss"] = mean_loss(model, val, batch_size, device)
            history.append(record)
            check_finite_epoch(model, record, lr)
            if keep_best and best_epoch(history) == epoch + 1:
                best = {
                    n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
                }
    restore_attention(model, attention)
    if best and best_epoch(history) != epochs:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in best:
                    param.copy_(best[name])
    return history


def best_epoch(history: list[dict[str, float]]) -> int | None:
    """The epoch with the lowest validation loss (the first of equals); ``None`` without
    validation."""
    scored = [r for r in history if "val_loss" in r]
    return int(min(scored, key=lambda r: r["val_loss"])["epoch"]) if scored else None


def check_finite_epoch(model: Any, record: dict[str, float], lr: float) -> None:
    """Stop at the first epoch whose losses or trainable parameters are not finite: AdamW does
    not skip a NaN step, so the weights cannot recover and later epochs are wasted."""
    losses = {k: v for k, v in record.items() if k != "epoch" and not math.isfinite(v)}
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # one host read for all tensors; names are looked up only when something is wrong
    flags = [torch.isfinite(p.detach()).all() for _, p in params]
    finite = torch.stack(flags).cpu() if flags else torch.ones(0, dtype=torch.bool)
    if not losses and bool(finite.all()):
        return
    what = ", ".join(f"{k} {v}" for k, v in losses.items())
    if not bool(finite.all()):
        first = next(n for (n, _), ok in zip(params, finite, strict=True) if not ok)
        what += (", " if what else "") + f"non-finite weights ({first} first)"
    raise LmforgeError(
        f"fine-tuning diverged in epoch {record['epoch']}: {what}; lower finetune.lr "
        f"(now {lr:g}) and check the data for extreme values"
    )
