import pytest
import torch

from lmforge.core.errors import LmforgeError
from lmforge.pretrain.checkpoint import (
    TrainerState,
    checkpoint_dirs,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def model_and_opt(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    model[1].weight = model[0].weight  # tied, as in GPT-2
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.tensor([1, 2])).sum().backward()
    opt.step()
    return model, opt


def test_roundtrip_restores_weights_optimizer_and_rng(tmp_path):
    model, opt = model_and_opt(0)
    torch.manual_seed(123)
    save_checkpoint(tmp_path, model, opt, TrainerState(step=5, tokens=50), keep=2)
    expected_draw = torch.rand(3)
    other, other_opt = model_and_opt(1)
    state = load_checkpoint(latest_checkpoint(tmp_path), other, other_opt, torch.device("cpu"))
    assert state.step == 5 and state.tokens == 50
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert other[1].weight is other[0].weight  # still tied
    assert torch.equal(
        opt.state_dict()["state"][0]["exp_avg"], other_opt.state_dict()["state"][0]["exp_avg"]
    )
    assert torch.equal(torch.rand(3), expected_draw)


def test_keeps_the_last_k_and_ignores_torn_saves(tmp_path):
    model, opt = model_and_opt(0)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, model, opt, TrainerState(step=step), keep=2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-00000002", "step-00000003"]
    # what kill -9 mid-save leaves: a temp dir, and a renamed dir whose state never landed
    torn = tmp_path / ".tmp-step-00000004-abc"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 10)
    (tmp_path / "step-00000005").mkdir()
    assert latest_checkpoint(tmp_path).name == "step-00000003"
    save_checkpoint(tmp_path, model, opt, TrainerState(step=6), keep=2)
    assert not torn.exists()


def test_foreign_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    model, opt = model_and_opt(0)
    path = save_checkpoint(tmp_path, model, opt, TrainerState(step=1), keep=1)
    bigger = torch.nn.Sequential(
        torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10), torch.nn.Linear(10, 3)
    )
    with pytest.raises(LmforgeError, match="does not match the model"):
        load_checkpoint(path, bigger, torch.optim.AdamW(bigger.parameters()), torch.device("cpu"))
    (path / "optimizer.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LmforgeError, match="cannot resume"):
        load_checkpoint(path, model, opt, torch.device("cpu"))


def test_optimizer_file_refuses_pickled_code(tmp_path):
    model, opt = model_and_opt(0)
    path = save_checkpoint(tmp_path, model, opt, TrainerState(step=1), keep=1)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state": Evil()}, path / "optimizer.pt")
    with pytest.raises(LmforgeError, match="cannot resume"):
        load_checkpoint(path, model, opt, torch.device("cpu"))
