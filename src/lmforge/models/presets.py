"""Named architecture presets for pretraining from scratch (LitGPT's ``name_to_config``).

Parameter counts were measured with ``count_params`` at a vocabulary of 8,000 (the
quickstart tokenizer); most of a tiny model's parameters are its embedding table, so they
scale with the vocabulary. Shapes follow well-known small models: GPT-2 (learned positions,
LayerNorm, GELU), Llama (RoPE, RMSNorm, SwiGLU, tied embeddings) and Google's compact BERTs
(Turc et al. 2019, ``google/bert_uncased_L-{2,4}_H-{128,512}``). The ModernBERT presets
(Warner et al. 2024: pre-LayerNorm, RoPE, GeGLU, no biases) keep the compact BERTs' width and
depth with a gated MLP of equal weight count (``intermediate`` = 8·hidden/3); pre-LN is what
lets a small encoder leave the masked-LM plateau on a CPU budget (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lmforge.core.registry import Registry

Kind = Literal["decoder", "encoder"]
Family = Literal["gpt2", "llama", "bert", "modernbert"]


@dataclass(frozen=True)
class ModelPreset:
    """The shape of a Transformer; ``pretrain.model`` overrides may change any size field."""

    name: str
    kind: Kind  # decoder: causal LM (clm); encoder: masked LM (mlm, mlm+nsp)
    family: Family
    layers: int
    heads: int
    hidden: int
    intermediate: int  # MLP width (SwiGLU/GeGLU: width of each of the gate/up projections)
    context: int  # maximum sequence length (learned positions, or RoPE's trained range)
    dropout: float
    description: str

    @classmethod
    def from_name(cls, name: str) -> ModelPreset:
        """The preset called ``name``; an unknown name raises ``LmforgeError`` with suggestions."""
        return PRESETS.get(name)


PRESETS: Registry[ModelPreset] = Registry("model preset")


def family_objective_error(preset: ModelPreset, objective: str) -> str | None:
    """Why ``preset``'s family cannot train ``objective`` (beyond decoder/encoder), or None.
    Recipe validation and ``build_config`` both ask, so a direct caller gets the same answer."""
    if preset.family == "modernbert" and objective != "mlm":
        return (
            f"{preset.name!r} trains with objective 'mlm' only (transformers' ModernBERT has "
            f"no NSP head or ELECTRA discriminator), got {objective!r}"
        )
    return None


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
    ModelPreset(
        "modernbert-tiny",
        "encoder",
        "modernbert",
        layers=2,
        heads=2,
        hidden=128,
        intermediate=341,
        context=512,
        dropout=0.0,
        description="ModernBERT (pre-LN, RoPE, GeGLU) at bert-tiny's shape, 1.44M params at "
        "vocab 8k with MLM head; masked LM only.",
    ),
    ModelPreset(
        "modernbert-small",
        "encoder",
        "modernbert",
        layers=4,
        heads=8,
        hidden=512,
        intermediate=1365,
        context=512,
        dropout=0.0,
        description="ModernBERT (pre-LN, RoPE, GeGLU) at bert-small's shape, 17.0M params at "
        "vocab 8k with MLM head; masked LM only.",
    ),
):
    PRESETS.add(_preset.name, _preset)


# ---------------------------------------------------------------- task-specific shapes
# Built by the tasks that train them from scratch (tasks/translation.py, image_classification.py):
# the shapes are data here, so every preset lmforge has is listed in one module.

# T5 v1.0 shapes (ReLU feed-forward, relative position buckets, tied embeddings), freshly
# initialised and sized to the run's tokenizer. Params measured with 8,000 tokens:
#   t5-tiny   2+2 layers, d_model 128, 4 heads x 32, d_ff 512    -> 1,943,296
#   t5-small  6+6 layers, d_model 512, 8 heads x 64, d_ff 2048   -> 48,153,088 (google's
#             t5-small shape: 60.5 M with its 32,128-token vocabulary)
# At t5-tiny size the tied 8k-token output layer costs more compute than all 4 layers.
SEQ2SEQ_PRESETS: dict[str, dict[str, int]] = {
    "t5-tiny": {"d_model": 128, "d_kv": 32, "d_ff": 512, "num_layers": 2, "num_heads": 4},
    "t5-small": {"d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_heads": 8},
}

# transformers' EncoderDecoderModel (the "bert2gpt2" pattern of Rothe et al. 2020): a ModernBERT
# encoder (pre-LN, RoPE, GeGLU at bert-mini's shape, all layers global attention) and a GPT-2
# decoder whose blocks add cross-attention to the encoder's output, freshly initialised and
# sized to the run's tokenizer. 10.5M params with 8,000 tokens (untied decoder input and output
# embeddings). On the translate recipe's zh->en pairs, 600 s at one thread each, it reached
# BLEU 5.2 where a T5 of similar size (4+3 layers, d_model 256: 8.3M) scored 0.4 (RESULTS.md);
# the recipe's 4 epochs score BLEU 14.4.
# ``context`` bounds the source (RoPE: no weights) and the decoder's learned positions.
ENCODER_DECODER_PRESETS: dict[str, dict[str, int]] = {
    "bert2gpt-mini": {
        "hidden": 256,
        "heads": 4,
        "encoder_layers": 4,
        "encoder_intermediate": 683,  # GeGLU: each of gate/up, 1024-wide MLP's weight count
        "decoder_layers": 3,
        "context": 512,
    },
}

# ViTConfig fields of the from-scratch presets. Both take 32x32 images; parameters measured
# with a 10-class head: vit-tiny 139,978 (grey) / 148,170 (RGB), vit-small 2,687,434 / 2,693,578.
# On digits (8x8 upscaled, 50 epochs, same split) vit-tiny at 32x32 with 8x8 patches and at
# 16x16 with 4x4 patches scored alike (val 98.6% vs 99.0%, test 98.0% vs 97.7%: the same 16
# patches, each 2x2 source pixels); 32x32 keeps more of a user's larger images.
VISION_PRESETS: dict[str, dict[str, Any]] = {
    "vit-tiny": {  # 16 patches of 8x8 + [CLS]
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 128,
    },
    "vit-small": {  # 64 patches of 4x4 + [CLS]; DeiT-Tiny's width, half its depth
        "image_size": 32,
        "patch_size": 4,
        "hidden_size": 192,
        "num_hidden_layers": 6,
        "num_attention_heads": 3,
        "intermediate_size": 768,
    },
}
