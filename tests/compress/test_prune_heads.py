"""Attention-head pruning (``prune`` step, ``kind: heads``) really removes heads: the saved
model has fewer parameters and a config that says so, the kept heads compute what they did,
a trained model keeps most of its accuracy, and the result loads in plain transformers."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tiny_bert, trained_tokenizer

from lmforge.compress import heads as H
from lmforge.compress.artifact import artifact_format
from lmforge.compress.config import CompressConfig
from lmforge.compress.methods import StepRun, load_methods
from lmforge.compress.stage import check_steps
from lmforge.core.errors import LmforgeError
from lmforge.core.manifest import Manifest, write_manifest

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ = 12  # tokens per example


def order_task(n: int, vocab: int, seed: int):
    """Random tokens with markers 2 and 3 placed once each; label 1 when 2 comes first. Needs
    attention (which marker the last token saw first), so removing the wrong heads hurts."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (n, SEQ), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    first = torch.randint(0, SEQ // 2, (n,), generator=g)
    second = torch.randint(SEQ // 2, SEQ, (n,), generator=g)
    ids[torch.arange(n), first] = torch.where(y == 1, 2, 3)
    ids[torch.arange(n), second] = torch.where(y == 1, 3, 2)
    return ids, y


def tiny_llama(vocab: int, kv_heads: int = 4, seed: int = 0):
    """2 layers x 4 heads of 8 (hidden 32): LlamaForSequenceClassification."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        intermediate_size=64,
        max_position_embeddings=SEQ,
        pad_token_id=0,
        num_labels=2,
    )
    return LlamaForSequenceClassification(config).eval()


class Batches:
    """The shape of ``tasks.base.Encoded`` that the prune step reads: len and batch(idx)."""

    def __init__(self, ids, labels) -> None:
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, idx: list[int]) -> dict:
        import torch

        ids = self.ids[idx]
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "labels": self.labels[idx],
        }


def accuracy(model, ids, labels) -> float:
    import torch

    with torch.no_grad():
        return (model(input_ids=ids).logits.argmax(-1) == labels).float().mean().item()


def train(model, ids, labels, steps: int = 120, lr: float = 5e-3):
    import torch

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        i = torch.randint(0, len(ids), (32,), generator=torch.Generator().manual_seed(step))
        loss = model(input_ids=ids[i], labels=labels[i]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    """A tiny Llama classifier trained on the order task (99.6% test accuracy)."""
    vocab = 64
    ids, y = order_task(2048, vocab, seed=100)
    model = train(tiny_llama(vocab), ids, y)
    test = order_task(512, vocab, seed=200)
    assert accuracy(model, *test) > 0.95
    return model, Batches(ids[:256], y[:256]), test


@pytest.mark.parametrize("kv_heads", [4, 2])  # multi-head and grouped-query attention
def test_the_kept_heads_compute_what_they_did(kv_heads):
    """Pruned model == the original with the removed heads' outputs set to zero, exactly."""
    import torch

    model = tiny_llama(64, kv_heads)
    ids, y = order_task(8, 64, seed=3)
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": y}]
    layout = H.head_layout(model)
    keep = H.heads_to_keep(H.gradient_importance(model, batches), layout, 0.5)
    assert all(len(k) == 2 for k in keep)
    if kv_heads == 2:  # one query head from each key/value group
        assert all(k[0] < 2 <= k[1] for k in keep)
    gates = torch.tensor([[float(h in k) for h in range(4)] for k in keep])
    with torch.no_grad(), H.on_head_outputs(model, lambda i, _, x: x * gates[i].view(-1, 1)):
        expected = model(input_ids=ids).logits
    H.remove_heads(model, keep)
    with torch.no_grad():
        got = model(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_least_important_heads_go_and_accuracy_holds(trained):
    """Half the heads of every layer removed: the least important (by gradient or ablation)
    cost little accuracy, the most important ones more: the scores rank heads by what they
    do. The activation proxy is computed but not held to that (it misranks on this model)."""
    model, data, test = trained
    source = accuracy(model, *test)
    batches = [data.batch(list(range(i, i + 32))) for i in range(0, len(data), 32)]
    kept = {}
    for importance, scorer in H.SCORERS.items():
        score = scorer(model, batches)
        for name, sign in (("least", 1), ("most", -1)):
            pruned = copy.deepcopy(model)
            H.remove_heads(pruned, H.heads_to_keep(sign * score, H.head_layout(pruned), 0.5))
            kept[importance, name] = accuracy(pruned, *test)
    # measured: source 0.996; gradient 0.949 (most important removed: 0.828); ablation 0.986
    # (0.682); the activation proxy misranks here: 0.885 (0.945)
    assert kept["gradient", "least"] >= source - 0.08, kept
    assert kept["gradient", "least"] >= kept["gradient", "most"] + 0.05, kept
    assert kept["ablation", "least"] >= source - 0.03, kept
    assert kept["ablation", "least"] >= kept["ablation", "most"] + 0.2, kept


def save_classifier(model, path: Path) -> Path:
    trained_tokenizer(["a b c d e f g h"] * 4, vocab_size=100).save_pretrained(path)
    model.save_pretrained(path)
    info = {"labels": ["after", "before"], "multi_label": False}
    write_manifest(path, Manifest(kind="full", task="classification", info=info, max_length=SEQ))
    return path


def step_run(source: Path, out: Path, data, **step) -> StepRun:
    cfg = CompressConfig(steps=[{"method": "prune", "kind": "heads", **step}])
    out.mkdir()

    def train_data():
        if data is None:
            raise AssertionError("the step asked for data before rejecting the model")
        return data, None

    return StepRun(
        cfg.steps[0], 0, artifact_format(source), out, "compress/heads", train_data, None
    )


def test_saved_model_is_smaller_and_loads_without_lmforge(trained, tmp_path):
    import torch
    from safetensors.torch import save_file

    model, data, test = trained
    source = save_classifier(model, tmp_path / "source")
    run = step_run(source, tmp_path / "out", data, sparsity=0.5, recovery_epochs=1, lr=1e-3)
    art, facts = load_methods().get("prune").run(run)
    assert facts["heads_before"] == 4 and facts["heads_after"] == facts["kv_heads_after"] == 2
    # per layer: q, k, v lose 2 heads x 8 rows x 32 inputs; o loses as many columns
    assert facts["params_before"] - facts["params_after"] == 2 * 4 * (2 * 8 * 32)
    config = json.loads((art.path / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (2, 2)
    assert config["head_dim"] == 8 and config["hidden_size"] == 32
    assert facts["recovery"][0]["train_loss"] > 0
    manifest = json.loads((art.path / "lmforge.json").read_text())
    assert manifest["settings"]["compress"][-1]["kind"] == "heads"

    from lmforge.compress.artifact import load_compressed

    pruned = load_compressed(art.path)[0]
    ids = test[0][:16]
    with torch.no_grad():
        expected = pruned(input_ids=ids).logits
    save_file({"ids": ids, "logits": expected}, str(tmp_path / "check.safetensors"))
    script = f"""
import sys, torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification
m = AutoModelForSequenceClassification.from_pretrained({str(art.path)!r}).eval()
t = load_file({str(tmp_path / "check.safetensors")!r})
assert m.model.layers[0].self_attn.q_proj.out_features == 16
with torch.no_grad():
    torch.testing.assert_close(m(input_ids=t["ids"]).logits, t["logits"], atol=1e-5, rtol=0)
assert not any(name.startswith("lmforge") for name in sys.modules), "lmforge was imported"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_grouped_query_attention_keeps_keys_and_values(tmp_path):
    model = tiny_llama(64, kv_heads=2)
    data = Batches(*order_task(64, 64, seed=2))
    run = step_run(save_classifier(model, tmp_path / "src"), tmp_path / "out", data, sparsity=0.5)
    art, facts = load_methods().get("prune").run(run)
    from transformers import AutoModelForSequenceClassification

    pruned = AutoModelForSequenceClassification.from_pretrained(art.path)
    attn = pruned.model.layers[1].self_attn
    assert (pruned.config.num_attention_heads, pruned.config.num_key_value_heads) == (2, 2)
    assert attn.q_proj.out_features == attn.o_proj.in_features == 16
    assert attn.k_proj.out_features == attn.v_proj.out_features == 16  # both kv heads stay
    assert facts["importance"] == "gradient"


def test_bert_is_refused_naming_the_field_before_any_work(tmp_path):
    """BERT's head size is hidden_size / heads: fewer heads would not load, so no pruning."""
    path = tmp_path / "bert"
    trained_tokenizer(["a b c d"] * 4, vocab_size=100).save_pretrained(path)
    tiny_bert(vocab_size=100, num_labels=2).save_pretrained(path)
    info = {"labels": ["a", "b"], "multi_label": False}
    write_manifest(path, Manifest(kind="full", task="classification", info=info, max_length=16))
    run = step_run(path, tmp_path / "out", None, sparsity=0.5)
    with pytest.raises(
        LmforgeError,
        match=r"steps\.0 \(prune\)\.kind: head pruning needs .*"
        r"BertForSequenceClassification derives it",
    ):
        load_methods().get("prune").run(run)


def test_neuron_pruning_of_a_causal_lm_is_refused_at_validation():
    cfg = CompressConfig(steps=[{"method": "prune", "kind": "neurons", "sparsity": 0.2}])
    with pytest.raises(LmforgeError, match=r"steps\.0 \(prune\)\.kind: neurons .* kind: heads"):
        check_steps(cfg, "instruction", "transformers")
    ok = CompressConfig(steps=[{"method": "prune", "kind": "heads", "sparsity": 0.2}])
    check_steps(ok, "instruction", "transformers")
