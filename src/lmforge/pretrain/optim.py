"""Optimizers and the learning-rate schedule of pretraining.

AdamW follows nanoGPT/GPT-3: weight decay only on matrices (>= 2-D weights), never on
biases, norms or position/token-type vectors; the fused kernel where torch has one. LAMB
(You et al. 2019, "Large Batch Optimization for Deep Learning") is the BERT optimizer for
large batches; torch has none, so it is written here (30 lines, tested against the paper's
update on a hand-computed step).
"""

from __future__ import annotations

import math

import torch

from lmforge.pretrain.config import PretrainConfig


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # 1-D tensors are biases and norm scales; decaying them hurts and buys nothing
        (decay if p.dim() >= 2 and "norm" not in name.lower() else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments: Adam's update rescaled per tensor by ||w|| / ||update||."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ):
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's Optimizer signature
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"].item()
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where(
                    (w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm)
                )
                p.add_(update, alpha=-group["lr"] * trust.item())
        return loss


def build_optimizer(
    model: torch.nn.Module, cfg: PretrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "lamb":
        return Lamb(groups, lr=cfg.lr, betas=betas)
    # fused AdamW: one kernel for all parameters (CUDA and, since torch 2.4, CPU)
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - devices without a fused kernel
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)
