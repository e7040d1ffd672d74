"""Fine-tuning methods, one registry entry each: which parameters train, and how.

``full`` and ``linear-probe`` only set ``requires_grad``; every other method wraps the model
with Hugging Face ``peft``, so adapters save with ``save_pretrained`` and load back with
``PeftModel.from_pretrained`` in plain peft. Target modules default to peft's per-architecture
tables (``query``/``value`` for BERT, ``c_attn`` for GPT-2, ``q_proj``/``v_proj`` for Llama)
and can be overridden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import Registry
from lmforge.core.schema import PositiveInt, StrictModel

if TYPE_CHECKING:
    import torch

# the task's output layer, trained by every method (named as in transformers' heads)
HEAD_NAMES = ("classifier", "score", "qa_outputs", "cls", "lm_head")
# IMAGE_CLS: a head peft has no task type for (ViT); adapters then get task_type=None and
# the head is listed in modules_to_save, as peft's image-classification guide does
PeftTask = Literal["SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS", "CAUSAL_LM", "SEQ_2_SEQ_LM", "IMAGE_CLS"]


# peft 0.21's default-target tables lack some architectures. transformers 5's ViT names its
# layers as Llama does, so it gets peft's Llama choices: LoRA/AdaLoRA on the query and value
# projections, IA3 on keys, values and the feed-forward output (fc2, whose input it rescales)
EXTRA_TARGETS = {
    "vit": {"lora": ["q_proj", "v_proj"], "ia3": ["k_proj", "v_proj", "fc2"]},
    # ModernBERT fuses q, k and v in one Wqkv; its MLP output is mlp.Wo (attn.Wo is attention's)
    "modernbert": {"lora": ["Wqkv"], "ia3": ["Wqkv", "mlp.Wo"]},
    # bert2gpt (EncoderDecoderModel): the ModernBERT encoder's Wqkv, the GPT-2 decoder's fused
    # self-attention c_attn and its cross-attention's q_attn (c_attn there projects k and v)
    "encoder-decoder": {
        "lora": ["Wqkv", "c_attn", "q_attn"],
        "ia3": ["Wqkv", "c_attn", "mlp.Wo", "mlp.c_proj"],
    },
}
IA3_FEEDFORWARD = ("fc2", "down_proj", "mlp.Wo", "mlp.c_proj")  # feed-forward outputs


def peft_task_type(task: PeftTask) -> str | None:
    return None if task == "IMAGE_CLS" else task


class MethodConfig(StrictModel):
    """Hyperparameters of the parameter-efficient methods (ignored by full / linear-probe)."""

    r: PositiveInt = Field(8, description="LoRA / AdaLoRA rank (AdaLoRA: final average rank).")
    alpha: PositiveInt = Field(16, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | None = Field(
        None,
        description="Module names to adapt; default: peft's table for the architecture. "
        "adapter: regexes of the feed-forward output modules adapters follow (end of name).",
    )
    num_virtual_tokens: PositiveInt = Field(
        20, description="Prefix / prompt tuning: virtual tokens."
    )
    adalora_init_r: PositiveInt = Field(12, description="AdaLoRA: initial rank before pruning.")
    adapter_size: PositiveInt = Field(
        64, description="Bottleneck adapter: hidden units of each adapter (MiniLM: 64 = hidden/6)."
    )
    adapter_activation: Literal["relu", "gelu", "silu", "tanh"] = Field(
        "relu", description="Bottleneck adapter: nonlinearity between down- and up-projection."
    )


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    # (model, config, task, total steps) -> the model to train; None: an inference method,
    # which scores labels with the model as it is (lmforge.finetune.fewshot runs it)
    apply: Callable[[torch.nn.Module, MethodConfig, PeftTask, int], torch.nn.Module] | None
    uses_peft: bool

    @property
    def trains(self) -> bool:
        return self.apply is not None


METHODS: Registry[Method] = Registry("fine-tuning method")


def training_methods() -> list[str]:
    """The methods that train (and save) a model; the others are inference methods."""
    return [name for name in METHODS.names() if METHODS.get(name).trains]


def head_parameters(model: torch.nn.Module) -> list[str]:
    """Names of the task head's modules present in ``model`` (trained by every method)."""
    found = [n for n in HEAD_NAMES if hasattr(model, n)]
    if not found:
        raise LmforgeError(f"{type(model).__name__} has no task head ({', '.join(HEAD_NAMES)})")
    return found


def initialised_modules(model: torch.nn.Module, heads: list[str]) -> list[str]:
    """Modules outside the head that loading initialised at random (``load_head`` records
    them): a masked-LM checkpoint has no pooler, which a classifier reads. An adapter must
    train and save them like the head (peft ``modules_to_save``), or the saved adapter would
    load onto another random pooler than the one it was trained with."""
    fresh = getattr(model, "lmforge_initialised", ())
    return [m for m in fresh if m.split(".")[0] not in heads]


def _full(model, cfg, task, total_steps):  # noqa: ANN001, ANN202, ARG001
    for p in model.parameters():
        p.requires_grad = True
    return model


def _linear_probe(model, cfg, task, total_steps):  # noqa: ANN001, ANN202, ARG001
    heads = head_parameters(model)
    for p in model.parameters():
        p.requires_grad = False
    for head in heads:  # through the module: a tied lm_head is listed under the embeddings
        for p in getattr(model, head).parameters():
            p.requires_grad = True
    return model


def _peft(build_config: Callable[[MethodConfig, PeftTask, list[str], int], object]):
    def apply(model, cfg, task, total_steps):  # noqa: ANN001, ANN202
        from peft import get_peft_model

        heads = [] if task in ("CAUSAL_LM", "SEQ_2_SEQ_LM") else head_parameters(model)
        heads += initialised_modules(model, heads)
        extra = EXTRA_TARGETS.get(getattr(model.config, "model_type", ""))
        if cfg.target_modules is None and extra is not None:
            family = "ia3" if build_config is _ia3 else "lora"
            cfg = cfg.model_copy(update={"target_modules": extra[family]})
        if build_config is _prefix and task != "IMAGE_CLS":  # ViT: _prefix says why
            _check_takes_past_key_values(model)
        try:
            return get_peft_model(model, build_config(cfg, task, heads, total_steps))
        except ValueError as e:  # peft: unknown architecture / target modules not found
            raise LmforgeError(
                f"cannot apply this method to {type(model).__name__}: {e} "
                "(set finetune.method_config.target_modules)"
            ) from None

    return apply


def _lora(cfg, task, heads, total_steps):  # noqa: ANN001, ANN202, ARG001
    from peft import LoraConfig

    return LoraConfig(
        task_type=peft_task_type(task),
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        modules_to_save=heads or None,
    )


def _adalora(cfg, task, heads, total_steps):  # noqa: ANN001, ANN202
    from peft import AdaLoraConfig

    # rank budget: prune from init_r to r between 10% and 70% of training (Zhang et al. 2023)
    return AdaLoraConfig(
        task_type=peft_task_type(task),
        init_r=cfg.adalora_init_r,
        target_r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        total_step=max(total_steps, 10),
        tinit=max(1, total_steps // 10),
        tfinal=max(1, total_steps * 3 // 10),
        deltaT=max(1, total_steps // 50),
        modules_to_save=heads or None,
    )


def _ia3(cfg, task, heads, total_steps):  # noqa: ANN001, ANN202, ARG001
    from peft import IA3Config

    targets = cfg.target_modules
    return IA3Config(
        task_type=peft_task_type(task),
        target_modules=targets,
        feedforward_modules=[t for t in targets if t in IA3_FEEDFORWARD] if targets else None,
        modules_to_save=heads or None,
    )


def _text_only(method: str, task: PeftTask) -> None:
    if task == "IMAGE_CLS":  # peft's prompt learning needs token embeddings and input_ids
        raise LmforgeError(
            f"{method} tuning prepends virtual tokens to a text model's input; peft cannot apply "
            "it to an image model (ViT). Use lora, adalora, ia3, full or linear-probe"
        )


def _check_takes_past_key_values(model: torch.nn.Module) -> None:
    """peft feeds the prefix as ``past_key_values``; without them it fails at the first
    forward pass, after the run has started (ModernBERT's encoder has no cache)."""
    import inspect

    backbone = getattr(model, getattr(model, "base_model_prefix", ""), model)
    if not any(
        "past_key_values" in inspect.signature(m.forward).parameters for m in (model, backbone)
    ):
        raise LmforgeError(
            f"finetune.method: prefix tuning passes its prefix as past_key_values, which "
            f"{type(model).__name__} does not take; use prompt, lora or another method"
        )


def _prefix(cfg, task, heads, total_steps):  # noqa: ANN001, ANN202, ARG001
    from peft import PrefixTuningConfig

    _text_only("prefix", task)
    return PrefixTuningConfig(
        task_type=peft_task_type(task),
        num_virtual_tokens=cfg.num_virtual_tokens,
        modules_to_save=heads or None,
    )


def _prompt(cfg, task, heads, total_steps):  # noqa: ANN001, ANN202, ARG001
    from peft import PromptTuningConfig

    _text_only("prompt", task)
    return PromptTuningConfig(
        task_type=peft_task_type(task),
        num_virtual_tokens=cfg.num_virtual_tokens,
        modules_to_save=heads or None,
    )


for _m in (
    Method("full", "every weight trains", _full, False),
    Method("linear-probe", "frozen encoder; only the task head trains", _linear_probe, False),
    Method(
        "lora", "low-rank updates of attention projections (Hu et al. 2021)", _peft(_lora), True
    ),
    Method(
        "adalora", "LoRA with an adaptive rank budget (Zhang et al. 2023)", _peft(_adalora), True
    ),
    Method(
        "ia3",
        "learned rescaling of keys, values and FFN activations (Liu et al. 2022)",
        _peft(_ia3),
        True,
    ),
    Method(
        "prefix",
        "trainable key/value prefixes in every layer (Li & Liang 2021)",
        _peft(_prefix),
        True,
    ),
    Method("prompt", "trainable soft-prompt embeddings (Lester et al. 2021)", _peft(_prompt), True),
    # inference methods: no training, nothing saved (finetune.fewshot holds their settings)
    Method(
        "zero-shot",
        "labels scored without examples: embedding similarity (encoders), likelihood (decoders)",
        None,
        False,
    ),
    Method("in-context", "k demonstrations per class in the prompt, no training", None, False),
):
    METHODS.add(_m.name, _m)


def apply_method(
    name: str, model: torch.nn.Module, cfg: MethodConfig, task: PeftTask, total_steps: int
) -> torch.nn.Module:
    method = METHODS.get(name)
    if method.apply is None:
        raise LmforgeError(f"finetune.method {name!r} scores without training; nothing to apply")
    return method.apply(model, cfg, task, total_steps)


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


from lmforge.finetune import adapters  # noqa: E402,F401  (registers "adapter")
