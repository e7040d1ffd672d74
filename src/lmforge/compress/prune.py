"""``prune``: remove weights, unstructured or structured, optionally recovering by fine-tuning.

- ``magnitude``: global L1 pruning over every Linear weight of the encoder body (not the
  embeddings or the task head): the smallest ``sparsity`` fraction of them, ranked together,
  become exact zeros (``torch.nn.utils.prune``, then made permanent). The dense file keeps
  its size and latency - sparse kernels would be needed for speed; the zeros are real and
  counted.
- ``neurons``: in every layer, the ``sparsity`` fraction of MLP neurons with the least weight
  (|row of the up-projection| x |column of the down-projection|, Li et al. 2017's magnitude
  criterion) are cut out of both matrices and ``intermediate_size`` shrinks, so the saved
  model is smaller and faster and loads in plain transformers. The same count per layer,
  because a transformers config has one ``intermediate_size``.
- ``heads``: in every layer, the ``sparsity`` fraction of attention heads with the least
  importance (``importance``: gradient, Michel et al. 2019; ablation; activation) are cut out
  of q/k/v and the output projection; ``num_attention_heads`` shrinks (compress.heads). Only
  architectures whose config has its own ``head_dim`` (Llama family) can say "fewer heads of
  the same size"; BERT and GPT-2 are refused naming ``kind``.
"""

from __future__ import annotations

from typing import Any

from lmforge.compress.artifact import Compressed, load_compressed
from lmforge.compress.heads import check_can_shrink, prune_heads
from lmforge.compress.methods import METHODS, Method, StepRun

TASKS = ("classification", "token-classification", "instruction")


def body_linears(model: Any) -> list[tuple[Any, str]]:
    """(module, "weight") for every Linear of the encoder body: what magnitude pruning ranks."""
    import torch

    body = model.base_model
    return [(m, "weight") for m in body.modules() if isinstance(m, torch.nn.Linear)]


def sparsity_of(params: list[tuple[Any, str]]) -> float:
    """Fraction of exact zeros over the given weights."""
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in params)
    total = sum(getattr(m, n).numel() for m, n in params)
    return zeros / max(total, 1)


def mlp_pairs(model: Any) -> list[tuple[Any, Any]]:
    """(up-projection, down-projection) Linear pairs of every layer's MLP (BERT family).

    Raises:
        ValueError: an architecture whose MLP this does not know.
    """
    pairs = []
    for module in model.base_model.modules():
        inter, out = (
            getattr(module, "intermediate", None),
            getattr(module, "output", None),
        )
        if inter is not None and hasattr(inter, "dense") and hasattr(out, "dense"):
            pairs.append((inter.dense, out.dense))
    if not pairs:
        raise ValueError(
            f"{type(model).__name__} has no BERT-style MLP (layer.intermediate/output); "
            "neuron pruning supports BERT-family encoders"
        )
    return pairs


def prune_neurons(model: Any, sparsity: float) -> int:
    """Cut the least important MLP neurons of every layer in place; returns neurons kept."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    pairs = mlp_pairs(model)
    width = pairs[0][0].out_features
    keep = max(1, round(width * (1 - sparsity)))
    for up, down in pairs:
        score = up.weight.norm(dim=1) * down.weight.norm(dim=0)  # (intermediate,)
        idx = torch.topk(score, keep).indices.sort().values
        new_up, new_down = (
            prune_linear_layer(up, idx, dim=0),
            prune_linear_layer(down, idx, dim=1),
        )
        for parent in model.base_model.modules():
            for name, child in parent.named_children():
                if child is up:
                    setattr(parent, name, new_up)
                elif child is down:
                    setattr(parent, name, new_down)
    model.config.intermediate_size = keep
    return keep


def _recover(run: StepRun, model: Any) -> list[dict[str, float]]:
    from lmforge.finetune.train import fit

    train, val = run.train_data()
    step = run.step
    return fit(
        model,
        train,
        val,
        epochs=step.recovery_epochs,
        lr=step.lr,
        batch_size=step.batch_size,
        seed=run.seed,
    )


def _importance_batches(run: StepRun) -> list[dict[str, Any]]:
    """The first ``importance_examples`` train examples, in training-size batches."""
    train, _ = run.train_data()
    n = min(len(train), run.step.importance_examples)
    size = run.step.batch_size
    return [train.batch(list(range(i, min(i + size, n)))) for i in range(0, n, size)]


def check_prune(step: Any, task: str) -> None:
    """Neuron pruning knows BERT-style MLPs only: refuse it for a causal LM up front."""
    if step.kind == "neurons" and task == "instruction":
        raise ValueError(
            "kind: neurons prunes BERT-style encoder MLPs (classification, token-"
            "classification); for a causal LM use kind: heads or magnitude"
        )


def run_prune(run: StepRun) -> tuple[Compressed, dict[str, Any]]:
    import torch.nn.utils.prune as tp

    step = run.step
    model, processor, _, _ = load_compressed(run.source.path)
    model = model.float()
    before = sum(p.numel() for p in model.parameters())
    facts: dict[str, Any] = {"kind": step.kind}
    if step.kind == "magnitude":
        params = body_linears(model)
        tp.global_unstructured(params, pruning_method=tp.L1Unstructured, amount=step.sparsity)
        if step.recovery_epochs:  # the masks stay on while training: pruned weights stay 0
            facts["recovery"] = _recover(run, model)
        for module, name in params:
            tp.remove(module, name)  # permanent: the weight tensor itself holds the zeros
        facts["sparsity"] = sparsity_of(params)
        total = sum(p.numel() for p in model.parameters())
        facts["model_sparsity"] = sum(int((p == 0).sum()) for p in model.parameters()) / total
    elif step.kind == "heads":
        try:
            check_can_shrink(model)  # before the data is encoded and scored
            facts.update(
                prune_heads(model, step.sparsity, _importance_batches(run), step.importance)
            )
        except ValueError as e:
            raise run.fail("kind", str(e)) from None
        if step.recovery_epochs:
            facts["recovery"] = _recover(run, model)
    else:
        try:
            facts["intermediate_size"] = prune_neurons(model, step.sparsity)
        except ValueError as e:
            raise run.fail("kind", str(e)) from None
        if step.recovery_epochs:
            facts["recovery"] = _recover(run, model)
    model.eval()
    facts["params_before"], facts["params_after"] = (
        before,
        sum(p.numel() for p in model.parameters()),
    )
    model.save_pretrained(run.out)
    art = run.save("transformers", processor, kind=step.kind, sparsity=step.sparsity)
    return art, facts


METHODS.add("prune", Method("prune", TASKS, lambda step: ("transformers",), run_prune, check_prune))
