"""How long a sequence a model's positions can take, checked before fine-tuning starts.

A learned position table (BERT, ELECTRA, RoBERTa, GPT-2) cannot index past its size: a longer
``finetune.max_length`` used to fail deep inside the embedding after the data was encoded.
Rotary positions (ModernBERT, Llama) have no table, so a longer ``max_length`` is fine; there
the config's ``max_position_embeddings`` is only a promise that exporters (GGUF's context
length) and ``lmforge serve``'s embeddings route read, so it is raised to what the model was
trained on.
"""

from __future__ import annotations

from typing import Any

from lmforge.core.errors import LmforgeError

# the position tables of transformers' families: BERT/ELECTRA/RoBERTa, GPT-2, BART/OPT
_TABLES = ("position_embeddings", "wpe", "embed_positions")


def position_table_size(model: Any) -> int | None:
    """The fewest positions any learned table of ``model`` covers (an encoder-decoder has one
    per side); ``None`` when it has none. RoBERTa's table starts after its padding index,
    BART's after its ``offset``."""
    import torch

    sizes = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.rsplit(".", 1)[-1] in _TABLES:
            pad = module.padding_idx
            offset = pad + 1 if pad is not None else getattr(module, "offset", 0)
            sizes.append(module.num_embeddings - offset)
    return min(sizes) if sizes else None


def _rope_types(config: Any) -> list[str]:
    """The rope types a config names (transformers 5 ``rope_parameters``, flat or per layer
    type; older ``rope_scaling``)."""
    found = []
    for field in ("rope_parameters", "rope_scaling"):
        params = getattr(config, field, None)
        if not isinstance(params, dict):
            continue
        nested = [v for v in params.values() if isinstance(v, dict)]
        for p in nested or [params]:
            found.append(str(p.get("rope_type", p.get("type", "default"))))
    return found


def fit_positions(model: Any, max_length: int, field: str = "finetune.max_length") -> None:
    """Reject a ``max_length`` a learned position table cannot hold; on a rotary model with
    plain RoPE, raise ``max_position_embeddings`` to ``max_length`` (scaled RoPE variants
    read that field in their maths, so they are left alone)."""
    table = position_table_size(model)
    if table is not None:
        if max_length > table:
            raise LmforgeError(
                f"{field}: {max_length} tokens, but the model's learned position table holds "
                f"{table}; lower {field} to at most {table}"
            )
        return
    config = getattr(model, "config", None)
    known = getattr(config, "max_position_embeddings", None)
    types = _rope_types(config)
    if isinstance(known, int) and max_length > known and types and set(types) == {"default"}:
        config.max_position_embeddings = max_length
