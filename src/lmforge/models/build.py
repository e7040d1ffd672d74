"""Build a transformers model for a pretraining objective: from a preset, or from a checkpoint.

Everything built here is a stock transformers class (GPT2LMHeadModel, LlamaForCausalLM,
BertForMaskedLM, BertForPreTraining, ModernBertForMaskedLM, ElectraForPreTraining), so
``save_pretrained`` output loads anywhere with the matching ``AutoModelFor*`` class and no
lmforge code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger
from lmforge.models.builtin import BUILTIN_MODELS, resolve_model_path
from lmforge.models.presets import PRESETS, ModelPreset, family_objective_error

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

    from lmforge.models.spec import ModelSpec

# Model types with an NSP head in their ``*ForPreTraining`` class (mlm+nsp).
NSP_MODEL_TYPES = frozenset({"bert", "megatron-bert", "mobilebert", "ernie"})


def wanted_kind(objective: str) -> str:
    """``decoder`` for clm, ``encoder`` for mlm, mlm+nsp and electra."""
    if objective not in ("clm", "mlm", "mlm+nsp", "electra"):
        raise LmforgeError(
            f"pretrain.objective: unknown objective {objective!r} (clm, mlm, mlm+nsp, electra)"
        )
    return "decoder" if objective == "clm" else "encoder"


def resolve_preset(spec: ModelSpec) -> ModelPreset:
    """The spec's preset with its size overrides applied."""
    if spec.preset is None:
        raise LmforgeError("pretrain.model: a config is built from a preset; this spec has a path")
    overrides = {
        field: getattr(spec, field)
        for field in ("layers", "heads", "hidden", "intermediate", "context", "dropout")
        if getattr(spec, field) is not None
    }
    return dataclasses.replace(PRESETS.get(spec.preset), **overrides)


def build_config(
    spec: ModelSpec, objective: str, vocab_size: int, special_ids: dict[str, int | None]
) -> PretrainedConfig:
    """The transformers config of ``spec.preset`` (plus overrides) for this objective.

    Args:
        spec: the recipe's ``pretrain.model``; must name a preset.
        objective: clm needs a decoder preset; mlm and mlm+nsp an encoder preset.
        vocab_size: the trained tokenizer's vocabulary size.
        special_ids: token ids by role (bos, eos, pad, ...), ``None`` where the tokenizer has none.

    Raises:
        LmforgeError: preset and objective disagree, or a shape is impossible.
    """
    from transformers import BertConfig, ElectraConfig, GPT2Config, LlamaConfig, ModernBertConfig

    p = resolve_preset(spec)
    if p.kind != wanted_kind(objective):
        raise LmforgeError(
            f"pretrain.objective: {objective!r} needs {_a(wanted_kind(objective))} preset, "
            f"but {p.name!r} is {_a(p.kind)}; pick e.g. "
            f"{'gpt-tiny' if objective == 'clm' else 'bert-tiny'} or change the objective"
        )
    if p.hidden % p.heads:
        raise LmforgeError(
            f"pretrain.model.heads: hidden size {p.hidden} is not divisible by {p.heads} heads; "
            f"choose heads that divide {p.hidden} (e.g. {_divisor_near(p.hidden, p.heads)})"
        )
    if (why := family_objective_error(p, objective)) is not None:
        raise LmforgeError(f"pretrain.objective: {why}")
    if p.family in ("llama", "modernbert") and (p.hidden // p.heads) % 2:
        raise LmforgeError(
            f"pretrain.model.heads: RoPE needs an even head size, got {p.hidden}/{p.heads} = "
            f"{p.hidden // p.heads}; change heads or hidden"
        )
    for role, token_id in special_ids.items():
        if token_id is not None and not 0 <= token_id < vocab_size:
            raise LmforgeError(
                f"special token {role!r} has id {token_id}, outside vocab {vocab_size}"
            )
    bos, eos, pad = (special_ids.get(r) for r in ("bos", "eos", "pad"))
    shape = dict(  # the field names every family but GPT-2 shares
        vocab_size=vocab_size,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        hidden_size=p.hidden,
        intermediate_size=p.intermediate,
        max_position_embeddings=p.context,
    )
    if p.family == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_layer=p.layers,
            n_head=p.heads,
            n_embd=p.hidden,
            n_inner=p.intermediate,
            n_positions=p.context,
            # GPT-2's tanh GELU as one fused kernel: "gelu_new" computes the same function in
            # five autograd ops, which made a 4-layer, 128-wide GPT's training step 1.35x
            # nanoGPT's on CPU (1.08x with this; benchmarks/nanogpt.py)
            activation_function="gelu_pytorch_tanh",
            resid_pdrop=p.dropout,
            embd_pdrop=p.dropout,
            attn_pdrop=p.dropout,
            bos_token_id=bos,  # passed even when None: GPT2Config defaults to GPT-2's 50256
            eos_token_id=eos,
            pad_token_id=pad,
            tie_word_embeddings=True,
        )
    if p.family == "llama":
        return LlamaConfig(
            **shape,
            num_key_value_heads=p.heads,  # plain multi-head attention at these sizes
            rms_norm_eps=1e-5,  # Llama 2 / SmolLM2 value
            attention_dropout=p.dropout,
            tie_word_embeddings=True,  # as SmolLM2: the embedding is most of a small model
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=pad,
        )
    if p.family == "modernbert":
        return ModernBertConfig(
            **shape,
            # global attention in every layer: ModernBERT's alternating sliding windows are a
            # long-context saving that buys nothing at these lengths
            layer_types=["full_attention"] * p.layers,
            local_attention=p.context,
            attention_dropout=p.dropout,
            mlp_dropout=p.dropout,
            embedding_dropout=p.dropout,
            pad_token_id=pad,
            bos_token_id=special_ids.get("cls"),
            eos_token_id=special_ids.get("sep"),
            cls_token_id=special_ids.get("cls"),
            sep_token_id=special_ids.get("sep"),
        )
    encoder: dict[str, Any] = dict(  # BERT's fields; ELECTRA's discriminator is a BERT body
        **shape,
        type_vocab_size=2,  # segment A / B, used by NSP pairs
        pad_token_id=pad,
        hidden_dropout_prob=p.dropout,
        attention_probs_dropout_prob=p.dropout,
    )
    if objective == "electra":  # the discriminator; pretrain/electra.py derives the generator
        return ElectraConfig(embedding_size=p.hidden, **encoder)
    return BertConfig(**encoder)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))


def _auto_class(objective: str) -> type:
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForPreTraining

    # AutoModelForPreTraining maps bert -> BertForPreTraining (MLM + NSP heads) and
    # electra -> ElectraForPreTraining (the replaced-token discriminator)
    return {
        "clm": AutoModelForCausalLM,
        "mlm": AutoModelForMaskedLM,
        "mlm+nsp": AutoModelForPreTraining,
        "electra": AutoModelForPreTraining,
    }[objective]


SPECIAL_ROLES = ("pad", "bos", "eos", "unk", "mask", "cls", "sep")


def special_token_ids(tokenizer: Any) -> dict[str, int | None]:
    """The tokenizer's special-token ids by role, as ``build_model`` takes them."""
    return {role: getattr(tokenizer, f"{role}_token_id") for role in SPECIAL_ROLES}


def build_model(
    spec: ModelSpec,
    objective: str,
    vocab_size: int,
    special_ids: dict[str, int | None],
    dtype: torch.dtype = torch.float32,
) -> PreTrainedModel:
    """A freshly initialised model for ``spec.preset``, or the checkpoint at ``spec.path``.

    Initialisation draws from torch's global RNG: seed before calling. A model from ``path``
    keeps its own vocabulary; ``vocab_size`` and ``special_ids`` apply to presets only.
    """
    if spec.path is not None:
        model = load_pretrained(spec.path, objective, dtype=dtype)
    else:
        config = build_config(spec, objective, vocab_size, special_ids)
        model = _auto_class(objective).from_config(config, dtype=dtype)
    if objective == "clm" and getattr(model, "loss_type", None) is None:
        # GPT-2 models carry loss_type=None: transformers then warns on every loss call,
        # which also breaks the torch.compile graph there
        model.loss_type = "ForCausalLM"
    return model


def check_objective(config: dict, objective: str, where: str) -> None:
    """Raise if the architecture in ``config.json`` cannot be trained with ``objective``."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = config.get("model_type", "?")
    encoder = model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.get("is_decoder")
    if objective == "clm":
        ok = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not encoder
    elif objective == "mlm":
        ok = model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    elif objective == "electra":
        ok = model_type == "electra"
    else:
        ok = model_type in NSP_MODEL_TYPES
    if not ok:
        fits = (
            "clm" if not encoder else "mlm" + ("/mlm+nsp" if model_type in NSP_MODEL_TYPES else "")
        )
        raise LmforgeError(
            f"pretrain.objective: {where} is a {model_type!r} model, which cannot be trained with "
            f"{objective!r}; use objective {fits}"
        )


def load_pretrained(
    path: str, objective: str, dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """Load a model directory or built-in model with the head ``objective`` trains.

    A checkpoint without that head (MiniLM is a bare ``BertModel``) gets a freshly initialised
    one from transformers; a warning names it, since its predictions are random until trained.

    Raises:
        LmforgeError: unknown path, or an architecture that cannot do ``objective``.
    """
    builtin = BUILTIN_MODELS.get(path) if path in BUILTIN_MODELS else None
    if builtin is not None and builtin.kind != wanted_kind(objective) and not Path(path).is_dir():
        # fail before a built-in is converted (smollm2-135m: ~20 s)
        fits = "clm" if builtin.kind == "decoder" else "mlm"
        raise LmforgeError(
            f"pretrain.objective: built-in model {path!r} is {_a(builtin.kind)}, which cannot be "
            f"trained with {objective!r}; use objective {fits}"
        )
    directory = resolve_model_path(path)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    check_objective(config, objective, repr(path))
    model, info = _auto_class(objective).from_pretrained(
        directory, dtype=dtype, output_loading_info=True
    )
    heads = sorted({_module_of(key) for key in info["missing_keys"]})
    if heads:
        logger.warning(
            "%s has no weights for %s (%s): newly initialised, random until trained",
            path,
            ", ".join(heads),
            type(model).__name__,
        )
    return model


def _module_of(key: str) -> str:
    """The head a parameter key belongs to: ``cls.predictions.transform.dense.weight`` ->
    ``cls.predictions``; ``lm_head.weight`` -> ``lm_head``."""
    parts = key.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]
