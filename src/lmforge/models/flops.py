"""Parameter counts and training FLOPs per token, for MFU and cost estimates.

The FLOPs estimate is the one of Kaplan et al. 2020 (§2.1), PaLM (Chowdhery et al. 2022,
appendix B) and nanoGPT's ``estimate_mfu``: forward + backward cost 6 FLOPs per weight per
token (2 forward, 4 backward), plus attention's score and value products,
``12 · layers · heads · head_dim · seq_len`` per token (T/2 on average with a causal mask is
not discounted, as in PaLM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts: ``total`` and ``trainable`` (each tied tensor once), and ``embedding``.

    ``embedding`` counts ``nn.Embedding`` tables (token, position, segment): lookups, no FLOPs.
    A tied output head shares the token table and is not counted twice.
    """
    import torch

    params = list(model.parameters())  # deduplicated: tied weights appear once
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "embedding": sum(p.numel() for p in params if id(p) in embedding_ids),
    }


def matmul_params(config: PretrainedConfig) -> int:
    """Weights used in a matmul per token (N in 6N), computed from the config's shape.

    Blocks (attention + MLP) plus the output projection ``vocab × hidden``, which costs FLOPs
    whether or not it is tied to the embedding (nanoGPT's N: all parameters but positions).
    Biases and norms (< 1%) are left out; the BERT and ModernBERT MLM heads add their
    ``hidden²`` transform. The MLP is gated (three matrices) for SwiGLU (``hidden_act`` silu,
    Llama family) and ModernBERT's GeGLU.
    """
    return block_params(config) + head_params(config)


def head_params(config: PretrainedConfig) -> int:
    """Matmul weights of the output head: ``vocab × hidden``, plus the MLM transform's d²."""
    d = config.hidden_size
    return config.vocab_size * d + (d * d if config.model_type in ("bert", "modernbert") else 0)


def block_params(config: PretrainedConfig) -> int:
    """Matmul weights of the transformer blocks alone (attention + MLP, every layer)."""
    d, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    ff = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d
    gated = getattr(config, "hidden_act", None) == "silu" or config.model_type == "modernbert"
    # q and o: d × (heads·head_dim) each; k and v: d × (kv_heads·head_dim) each
    attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
    mlp = (3 if gated else 2) * d * ff
    return layers * (attention + mlp)


def _attention_flops(config: PretrainedConfig, seq_len: int) -> int:
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 12 * layers * heads * head_dim * seq_len


def flops_per_token(config: PretrainedConfig, seq_len: int, predicted: float = 1.0) -> float:
    """Training FLOPs per token: ``6·N + 12·L·H·Q·T`` (N: ``matmul_params``; Q: head size).

    ``predicted`` is the share of positions the output head runs on: 1, or the masking rate
    for ModernBERT's sparse prediction (the head sees the masked positions only). Multiply by
    tokens per second and divide by the hardware's peak FLOP/s for MFU.
    """
    matmuls = block_params(config) + predicted * head_params(config)
    return float(6 * matmuls + _attention_flops(config, seq_len))


def electra_flops_per_token(
    discriminator: PretrainedConfig, generator: PretrainedConfig, seq_len: int
) -> float:
    """Training FLOPs per token of ELECTRA: both encoders run forward and backward on every
    token. The discriminator's head is ``d × d`` then ``d × 1`` (no vocabulary projection);
    the generator's is ``g × E`` then ``E × V`` over the shared ``E``-wide embeddings, plus
    its ``E × g`` input projection. Equals torch's FlopCounterMode on a training step (tested).
    """
    d, e = discriminator.hidden_size, discriminator.embedding_size
    g, vocab = generator.hidden_size, generator.vocab_size
    disc = block_params(discriminator) + d * d + d + (e * d if e != d else 0)
    gen = block_params(generator) + g * e + e * vocab + (e * g if e != g else 0)
    attention = _attention_flops(discriminator, seq_len) + _attention_flops(generator, seq_len)
    return float(6 * (disc + gen) + attention)
