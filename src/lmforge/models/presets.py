"""Named architecture presets for pretraining from scratch (LitGPT's ``name_to_config``).

Parameter counts were measured with ``count_params`` at a vocabulary of 8,000 (the
quickstart tokenizer); most of a tiny model's parameters are its embedding table, so they
scale with the vocabulary. Shapes follow well-known small models: GPT-2 (learned positions,
LayerNorm, GELU), Llama (RoPE, RMSNorm, SwiGLU, tied embeddings) and Google's compact BERTs
(Turc et al. 2019, ``google/bert_uncased_L-{2,4}_H-{128,512}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lmforge.core.registry import Registry

Kind = Literal["decoder", "encoder"]
Family = Literal["gpt2", "llama", "bert"]


@dataclass(frozen=True)
class ModelPreset:
    """The shape of a Transformer; ``pretrain.model`` overrides may change any size field."""

    name: str
    kind: Kind  # decoder: causal LM (clm); encoder: masked LM (mlm, mlm+nsp)
    family: Family
    layers: int
    heads: int
    hidden: int
    intermediate: int  # MLP width (SwiGLU: width of each of the gate/up projections)
    context: int  # maximum sequence length (learned positions, or RoPE's trained range)
    dropout: float
    description: str

    @classmethod
    def from_name(cls, name: str) -> ModelPreset:
        """The preset called ``name``; an unknown name raises ``LmforgeError`` with suggestions."""
        return PRESETS.get(name)


PRESETS: Registry[ModelPreset] = Registry("model preset")

for _preset in (
    ModelPreset(
        "gpt-tiny",
        "decoder",
        "gpt2",
        layers=4,
        heads=4,
        hidden=96,
        intermediate=384,
        context=256,
        dropout=0.0,
        description="GPT-2 shape, 1.24M params at vocab 8k (0.44M non-embedding); CPU smoke runs.",
    ),
    ModelPreset(
        "gpt-small",
        "decoder",
        "gpt2",
        layers=8,
        heads=6,
        hidden=384,
        intermediate=1536,
        context=512,
        dropout=0.0,
        description="GPT-2 shape, 17.5M params at vocab 8k (14.2M non-embedding).",
    ),
    ModelPreset(
        "llama-tiny",
        "decoder",
        "llama",
        layers=4,
        heads=4,
        hidden=96,
        intermediate=256,
        context=256,
        dropout=0.0,
        description="Llama shape (RoPE, RMSNorm, SwiGLU, tied), 1.21M params at vocab 8k.",
    ),
    ModelPreset(
        "llama-small",
        "decoder",
        "llama",
        layers=8,
        heads=6,
        hidden=384,
        intermediate=1024,
        context=512,
        dropout=0.0,
        description="Llama shape (RoPE, RMSNorm, SwiGLU, tied), 17.2M params at vocab 8k.",
    ),
    ModelPreset(
        "bert-tiny",
        "encoder",
        "bert",
        layers=2,
        heads=2,
        hidden=128,
        intermediate=512,
        context=512,
        dropout=0.1,
        description="BERT L-2 H-128 (google bert-tiny), 1.51M params at vocab 8k with MLM head.",
    ),
    ModelPreset(
        "bert-small",
        "encoder",
        "bert",
        layers=4,
        heads=8,
        hidden=512,
        intermediate=2048,
        context=512,
        dropout=0.1,
        description="BERT L-4 H-512 (google bert-small), 17.2M params at vocab 8k with MLM head.",
    ),
):
    PRESETS.add(_preset.name, _preset)
