"""Attention-head pruning that really removes heads: fewer rows in q/k/v, fewer columns in the
output projection, and a config whose head count says so, so the saved model is smaller,
faster, and loads in plain transformers.

transformers 5 removed ``prune_heads``, and only some architectures can describe a model with
fewer heads: the pruned model must be one its own config rebuilds.

- Llama family (Llama, Mistral, Qwen2/3, SmolLM2, lmforge's llama presets): the config has a
  ``head_dim`` of its own, so ``num_attention_heads`` can shrink while each head keeps its
  size. Supported. The count is uniform across layers (a config has one), each layer drops
  its own least important heads. Grouped-query attention keeps its groups: the same number
  of query heads goes from each group, and keys/values stay; plain multi-head attention
  drops a head's query, key and value together.
- BERT (MiniLM, bert-tiny) and GPT-2 derive the head size from ``hidden_size /
  num_attention_heads``: a BERT with 3 heads of 8 instead of 4 would be rebuilt as 3 heads of
  10 and not load. Refused; their MLP neurons can be pruned instead (``kind: neurons``).

Importance (what ranks the heads within a layer):

- ``gradient``: Michel et al. 2019 ("Are Sixteen Heads Really Better than One?"): a gate
  ξ_h = 1 multiplies each head's output; I_h = Σ_batches |∂L/∂ξ_h| on labelled training
  batches: the first-order loss change from removing the head.
- ``activation``: the mean L2 norm of the head's contribution to the layer's output
  (its slice of the output projection applied to its output) over real tokens; no labels.
- ``ablation``: the loss increase when the head alone is removed (Michel et al.'s ablation
  experiment as a score): exact for one head, layers x heads extra forward passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
UNSUPPORTED = (
    "head pruning needs an attention whose size per head is its own config field (head_dim: "
    "Llama, Mistral, Qwen2, SmolLM2, lmforge's llama-* presets); {name} derives it from "
    "hidden_size / num_attention_heads, so a model with fewer heads would not load in "
    "transformers. Use kind: neurons (MLP neurons) or kind: magnitude for this model"
)


@dataclass(frozen=True)
class HeadLayout:
    """How one model's attention is shaped (the same in every layer)."""

    heads: int  # query heads per layer
    kv_heads: int  # key/value heads per layer (== heads without grouped-query attention)
    head_dim: int

    @property
    def group(self) -> int:
        """Query heads sharing one key/value head."""
        return self.heads // self.kv_heads


def attention_modules(model: Any) -> list[Any]:
    """The self-attention module of every layer, in order.

    Raises:
        ValueError: an architecture whose head count cannot shrink (see the module docstring).
    """
    import torch

    found = [
        m
        for m in model.modules()
        if all(isinstance(getattr(m, p, None), torch.nn.Linear) for p in PROJECTIONS)
        and isinstance(getattr(m, "head_dim", None), int)
    ]
    if not found:
        raise ValueError(UNSUPPORTED.format(name=type(model).__name__))
    return found


def head_layout(model: Any) -> HeadLayout:
    cfg = model.config
    heads = cfg.num_attention_heads
    head_dim = attention_modules(model)[0].head_dim
    return HeadLayout(heads, getattr(cfg, "num_key_value_heads", None) or heads, head_dim)


def _shrunk_config(config: Any, layout: HeadLayout, heads: int, kv_heads: int) -> Any:
    """A copy of ``config`` describing ``heads`` query and ``kv_heads`` key/value heads of the
    same size (``head_dim`` set explicitly: no longer hidden_size // heads)."""
    import copy

    config = copy.deepcopy(config)
    config.num_attention_heads = heads
    if hasattr(config, "num_key_value_heads"):
        config.num_key_value_heads = kv_heads
    config.head_dim = layout.head_dim
    return config


def check_can_shrink(model: Any) -> HeadLayout:
    """Refuse, before any scoring, a model whose config cannot describe fewer heads: a copy
    with one head (per key/value group) fewer must build attention of the matching size.

    Raises:
        ValueError: the architecture derives the head size from the head count, or its
            attention is not made of q/k/v/o projections.
    """
    import torch

    layout = head_layout(model)
    mha = layout.kv_heads == layout.heads
    if layout.heads == 1:
        raise ValueError(f"a model with {layout.heads} attention head(s) has none to remove")
    heads = layout.heads - (1 if mha else layout.kv_heads)
    kv = heads if mha else layout.kv_heads
    with torch.device("meta"):
        fresh = type(model)(_shrunk_config(model.config, layout, heads, kv))
    q_width = attention_modules(fresh)[0].q_proj.out_features
    if q_width != heads * layout.head_dim:
        raise ValueError(UNSUPPORTED.format(name=type(model).__name__))
    return layout


@contextmanager
def on_head_outputs(model: Any, hook: Any) -> Iterator[list[Any]]:
    """Run ``hook(layer_index, o_proj, x)`` on each layer's per-head output ``x`` (B, T, H, d)
    before the output projection; the hook returns the (possibly scaled) ``x``."""
    modules = attention_modules(model)
    layout = head_layout(model)
    handles = []
    for i, attn in enumerate(modules):

        def pre(module: Any, args: tuple[Any, ...], i: int = i) -> tuple[Any, ...]:
            x = args[0]  # (B, T, H*d)
            heads = x.view(*x.shape[:-1], layout.heads, layout.head_dim)
            return (hook(i, module, heads).reshape(x.shape), *args[1:])

        handles.append(attn.o_proj.register_forward_pre_hook(pre))
    try:
        yield modules
    finally:
        for h in handles:
            h.remove()


def gradient_importance(model: Any, batches: list[dict[str, Any]]) -> Any:
    """(layers, heads) Σ |∂loss/∂gate| over ``batches`` (Michel et al. 2019); each batch holds
    ``labels`` so the model returns its task loss."""
    import torch

    layout = head_layout(model)
    n_layers = len(attention_modules(model))
    gates = torch.ones(n_layers, layout.heads, requires_grad=True)
    score = torch.zeros(n_layers, layout.heads)
    was_training = model.training
    model.eval()  # no dropout: the gradient of the model that is pruned
    with on_head_outputs(model, lambda i, _, x: x * gates[i].view(-1, 1)):
        for batch in batches:
            model.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            score += gates.grad.abs()
            gates.grad = None
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return score


@contextmanager
def _no_grad_eval(model: Any) -> Iterator[None]:
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def activation_importance(model: Any, batches: list[dict[str, Any]]) -> Any:
    """(layers, heads) mean over real tokens of ‖W_o[:, h] · head_h‖: how much each head adds
    to the layer's output (no labels needed)."""
    import torch

    layout = head_layout(model)
    n_layers = len(attention_modules(model))
    total = torch.zeros(n_layers, layout.heads)
    tokens = 0
    mask: list[Any] = [None]

    def measure(i: int, o_proj: Any, x: Any) -> Any:
        w = o_proj.weight.view(-1, layout.heads, layout.head_dim)  # (out, H, d)
        norms = torch.einsum("bthd,ohd->btho", x, w).norm(dim=-1)  # (B, T, H)
        total[i] += (norms * mask[0].unsqueeze(-1)).sum(dim=(0, 1))
        return x

    with _no_grad_eval(model), on_head_outputs(model, measure):
        for batch in batches:
            ids = batch["input_ids"]
            mask[0] = batch.get("attention_mask", torch.ones_like(ids)).to(total.dtype)
            tokens += int(mask[0].sum())
            model(**{k: v for k, v in batch.items() if k != "labels"})
    return total / max(tokens, 1)


def ablation_importance(model: Any, batches: list[dict[str, Any]]) -> Any:
    """(layers, heads) loss increase when the head alone is removed (its output zeroed) on
    labelled ``batches``: exact for single removals, layers x heads extra passes over them."""
    import torch

    layout = head_layout(model)
    n_layers = len(attention_modules(model))
    gates = torch.ones(n_layers, layout.heads)

    def loss() -> float:
        return sum(float(model(**batch).loss) * len(batch["input_ids"]) for batch in batches)

    score = torch.zeros(n_layers, layout.heads)
    with _no_grad_eval(model), on_head_outputs(model, lambda i, _, x: x * gates[i].view(-1, 1)):
        full = loss()
        for layer in range(n_layers):
            for head in range(layout.heads):
                gates[layer, head] = 0.0
                score[layer, head] = loss() - full
                gates[layer, head] = 1.0
    return score / max(sum(len(b["input_ids"]) for b in batches), 1)


SCORERS = {
    "gradient": gradient_importance,
    "activation": activation_importance,
    "ablation": ablation_importance,
}


def heads_to_keep(score: Any, layout: HeadLayout, sparsity: float) -> list[list[int]]:
    """Per layer, the sorted query-head indices to keep: the most important ones, the same
    count in every layer and (grouped-query attention) in every key/value group."""
    import torch

    keep_per_group = max(1, round(layout.group * (1 - sparsity)))
    kept = []
    for layer in score:
        groups = layer.view(layout.kv_heads, layout.group)  # (K, g): query heads per kv head
        if layout.kv_heads == layout.heads:  # multi-head attention: rank all heads together
            count = max(1, round(layout.heads * (1 - sparsity)))
            kept.append(sorted(torch.topk(layer, count).indices.tolist()))
            continue
        idx = torch.topk(groups, keep_per_group, dim=1).indices  # (K, g')
        offsets = torch.arange(layout.kv_heads).unsqueeze(1) * layout.group
        kept.append(sorted((idx + offsets).flatten().tolist()))
    return kept


def _rows(heads: list[int], head_dim: int) -> Any:
    import torch

    return torch.tensor([h * head_dim + j for h in heads for j in range(head_dim)])


def remove_heads(model: Any, keep: list[list[int]]) -> HeadLayout:
    """Cut every query head not in ``keep[layer]`` out of q/o (and k/v too without grouped-
    query attention) and shrink the config; returns the new layout.

    Raises:
        ValueError: the pruned model is not one its config rebuilds (then it would not load).
    """
    from transformers.pytorch_utils import prune_linear_layer

    layout = head_layout(model)
    modules = attention_modules(model)
    mha = layout.kv_heads == layout.heads
    new_heads = len(keep[0])
    new_kv = new_heads if mha else layout.kv_heads
    for attn, heads in zip(modules, keep, strict=True):
        rows = _rows(heads, layout.head_dim)
        attn.q_proj = prune_linear_layer(attn.q_proj, rows, dim=0)
        attn.o_proj = prune_linear_layer(attn.o_proj, rows, dim=1)
        if mha:
            attn.k_proj = prune_linear_layer(attn.k_proj, rows, dim=0)
            attn.v_proj = prune_linear_layer(attn.v_proj, rows, dim=0)
        attn.num_key_value_groups = new_heads // new_kv  # read by the attention kernels
        for name, value in (("num_heads", new_heads), ("num_key_value_heads", new_kv)):
            if hasattr(attn, name):
                setattr(attn, name, value)
    shrunk = _shrunk_config(model.config, layout, new_heads, new_kv)
    for key in ("num_attention_heads", "num_key_value_heads", "head_dim"):
        if hasattr(shrunk, key):  # in place: every attention module shares this config
            setattr(model.config, key, getattr(shrunk, key))
    check_rebuilds(model)
    return HeadLayout(new_heads, new_kv, layout.head_dim)


def check_rebuilds(model: Any) -> None:
    """The model's config builds a model of exactly its parameter shapes (on the meta device:
    no memory), i.e. ``from_pretrained`` of the saved directory will load it."""
    import torch

    with torch.device("meta"):
        fresh = type(model)(model.config)
    want = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wrong = sorted(k for k in have if want.get(k) != have[k])
    if wrong:
        raise ValueError(
            UNSUPPORTED.format(name=type(model).__name__)
            + f" (its config rebuilds other shapes for {', '.join(wrong[:3])})"
        )


def prune_heads(
    model: Any, sparsity: float, batches: list[dict[str, Any]], importance: str
) -> dict[str, Any]:
    """Score heads on ``batches`` and remove the ``sparsity`` fraction with the least
    importance from every layer, in place; returns what was done (for pareto.json)."""
    before = check_can_shrink(model)  # refuse an unsupported architecture before scoring
    score = SCORERS[importance](model, batches)
    keep = heads_to_keep(score, before, sparsity)
    after = remove_heads(model, keep)
    return {
        "importance": importance,
        "heads_before": before.heads,
        "heads_after": after.heads,
        "kv_heads_after": after.kv_heads,
        "kept_heads": keep,
    }
