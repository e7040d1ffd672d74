"""Bottleneck adapters as a fine-tuning method (``finetune.method: adapter``).

One small bottleneck (``down -> ReLU -> up`` plus a residual; Houlsby et al. 2019) after each
layer's feed-forward output, before its residual and layer norm (Pfeiffer et al. 2020); only
the adapters and the task head train. On MiniLM-L6 (hidden 384, 6 layers) adapters of size 64
add 297,600 parameters: with the 5-way head, 1.30% of the model trains.

peft has no bottleneck adapter and none of its tuners can express one (see
``modeling_bottleneck_adapter``), so this method does not use peft. The saved model directory
holds the full model, the adapter alone (``bottleneck_adapter.safetensors``, ~1.2 MB for
MiniLM) and a copy of the self-contained ``modeling_bottleneck_adapter.py``. lmforge loads it
from its own code (``register_auto_classes``), never running the directory's copy; a user
without lmforge may read that copy, then opt in to running it (``trust_remote_code``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lmforge.core.errors import LmforgeError
from lmforge.finetune.methods import METHODS, Method, MethodConfig, PeftTask, head_parameters

if TYPE_CHECKING:
    import torch

# model_type -> regex matching the full name of each layer's feed-forward output projection
_BERT_OUTPUT = r"\.layer\.\d+\.output\.dense$"  # BertOutput; never attention.output.dense
_MLP_DOWN = r"\.layers\.\d+\.mlp\.down_proj$"  # Llama-style gated MLP
_FC2 = r"\.layers\.\d+\.fc2$"  # BART / Marian encoder and decoder layers
FFN_OUTPUT: dict[str, str] = {
    "bert": _BERT_OUTPUT,
    "roberta": _BERT_OUTPUT,
    "xlm-roberta": _BERT_OUTPUT,
    "electra": _BERT_OUTPUT,
    "vit": r"\.layers\.\d+\.mlp\.fc2$",
    "distilbert": r"\.layer\.\d+\.ffn\.lin2$",
    "gpt2": r"\.h\.\d+\.mlp\.c_proj$",
    "modernbert": r"\.layers\.\d+\.mlp\.Wo$",  # GeGLU output; never attn.Wo
    "llama": _MLP_DOWN,
    "mistral": _MLP_DOWN,
    "qwen2": _MLP_DOWN,
    "t5": r"\.DenseReluDense\.wo$",
    "mt5": r"\.DenseReluDense\.wo$",
    "bart": _FC2,
    "marian": _FC2,
}


def target_pattern(model_type: str, target_modules: list[str] | None) -> str:
    """The regex naming the modules adapters follow: the user's, else the architecture's."""
    if target_modules:
        return rf"(?:^|\.)(?:{'|'.join(target_modules)})$"
    if model_type not in FFN_OUTPUT:
        raise LmforgeError(
            f"finetune.method: adapter does not know where the feed-forward output of "
            f"{model_type!r} models is; set finetune.method_config.target_modules to its "
            f"module name (a regex, e.g. 'mlp.c_proj'), or use one of: {', '.join(FFN_OUTPUT)}"
        )
    return FFN_OUTPUT[model_type]


def _apply(
    model: torch.nn.Module, cfg: MethodConfig, task: PeftTask, total_steps: int
) -> torch.nn.Module:
    from lmforge.finetune.modeling_bottleneck_adapter import CHILD, add_bottleneck_adapters

    pattern = target_pattern(model.config.model_type, cfg.target_modules)
    heads = [] if task in ("CAUSAL_LM", "SEQ_2_SEQ_LM") else head_parameters(model)
    try:
        added = add_bottleneck_adapters(
            model,
            size=cfg.adapter_size,
            activation=cfg.adapter_activation,
            target_modules=pattern,
            modules_to_save=heads,
            base_model_name_or_path=model.config.name_or_path or None,
        )
    except ValueError as e:
        raise LmforgeError(
            f"finetune.method: adapter cannot adapt {type(model).__name__}: {e} "
            "(finetune.method_config.target_modules)"
        ) from None
    # one adapter per feed-forward block: a pattern that also caught attention outputs or a
    # pooler would silently change the method
    blocks = {m.group(1) if (m := re.match(r"(.*?\.\d+)\.", n)) else n for n in added}
    if len(blocks) != len(added):
        raise LmforgeError(
            f"finetune.method_config.target_modules matches {len(added)} modules in "
            f"{len(blocks)} layers ({added[:4]}...); give the feed-forward output only"
        )
    for name, p in model.named_parameters():
        p.requires_grad = f".{CHILD}." in name
    for head in heads:  # through the module: a tied head is listed under the embeddings
        for p in getattr(model, head).parameters():
            p.requires_grad = True
    return model


METHODS.add(
    "adapter",
    Method(
        "adapter",
        "bottleneck adapters after each feed-forward block (Houlsby et al. 2019; "
        "Pfeiffer et al. 2020)",
        _apply,
        False,
    ),
)
