import math

import pytest
import torch

from lmforge.pretrain.config import PretrainConfig
from lmforge.pretrain.optim import Lamb, build_optimizer, lr_at, param_groups


def cfg(**kw) -> PretrainConfig:
    return PretrainConfig(
        **{"max_steps": 100, "warmup_steps": 10, "lr": 1e-3, "min_lr_ratio": 0.1, **kw}
    )


def test_schedule_warms_up_then_decays_to_the_floor():
    c = cfg()
    assert lr_at(0, c) == pytest.approx(1e-4)
    assert lr_at(9, c) == pytest.approx(1e-3)
    mid = lr_at(55, c)
    assert mid == pytest.approx(1e-4 + 0.9e-3 * 0.5, rel=1e-6)  # halfway through the cosine
    assert lr_at(100, c) == pytest.approx(1e-4)
    lrs = [lr_at(s, c) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {p.dim() for p in decay["params"]} == {2}
    assert len(no_decay["params"]) == 4  # two biases, norm weight and bias


def test_adamw_is_fused_where_available():
    opt = build_optimizer(torch.nn.Linear(3, 3), cfg(), torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults.get("fused")


def test_lamb_step_matches_the_paper_update():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3))
    g = torch.randn(5, 3)
    w0 = w.detach().clone()
    opt = Lamb([w], lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    w.grad = g.clone()
    opt.step()
    m, v = 0.1 * g / 0.1, 0.001 * g * g / 0.001  # bias-corrected first step
    update = m / (v.sqrt() + 1e-6) + 0.01 * w0
    expected = w0 - 0.01 * (w0.norm() / update.norm()) * update
    assert torch.allclose(w.detach(), expected, atol=1e-6)


def test_lamb_trains_a_regression():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1)
    model = torch.nn.Linear(8, 1)
    opt = Lamb(model.parameters(), lr=0.05)
    first = None
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert math.isfinite(loss.item()) and loss.item() < 0.05 * first
