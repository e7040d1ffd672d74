"""Bottleneck adapters (Houlsby et al. 2019) after each feed-forward output (Pfeiffer et al. 2020).

This file is self-contained on purpose (torch, transformers and safetensors only). lmforge loads
a saved adapted model from *this* module, never from the copy in the model directory:
``register_auto_classes(model_dir)`` teaches transformers' Auto classes the adapted
``model_type`` in this process, so ``from_pretrained`` runs with ``trust_remote_code=False``::

    from lmforge.finetune.modeling_bottleneck_adapter import register_auto_classes

    register_auto_classes(model_dir)
    AutoModelForSequenceClassification.from_pretrained(model_dir)

A copy of this file also goes into every saved model directory (named in config.json's
``auto_map``) for users without lmforge, who may choose, after reading that file, to let
transformers run it (``trust_remote_code``); lmforge never does unless the user asked for it.

Why not peft: peft has no bottleneck adapter, and its tuners are linear in the input (LoRA,
IA3, ...) or weight-space (PEANuT), so none expresses ``h + up(relu(down(h)))``. Why not a merge
into a stock architecture: that ReLU acts on the feed-forward block's *output*, after its own
activation; no stock layer composes two nonlinearities there, so the exact model needs code.

An adapter maps the output ``h`` of a layer's feed-forward block (before its residual and
layer norm) to ``h + up(act(down(h)))``; ``up`` starts at zero, so a freshly adapted model
computes exactly what its base model did. Each adapter is a child named ``bottleneck_adapter``
of the module it follows, applied by a forward hook, so the base weights keep their names and
load unchanged. The model's class becomes ``<Base>WithBottleneckAdapters`` and its config's
``model_type`` gains a suffix: loading with neither the registration nor ``trust_remote_code``
fails loudly instead of silently dropping the adapters.

The adapter alone (adapters + task head, ~1% of the weights) is saved next to the full model
as ``bottleneck_adapter.safetensors`` + ``bottleneck_adapter_config.json``;
``load_bottleneck_adapter(base_model, directory)`` puts it back on its base model.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.models.auto import modeling_auto

CONFIG_KEY = "bottleneck_adapter"  # config.json: {size, activation, target_modules, ...}
CHILD = "bottleneck_adapter"  # the adapter's module name under the module it follows
SUFFIX = "WithBottleneckAdapters"
MODEL_TYPE_SUFFIX = "_bottleneck_adapter"
ADAPTER_WEIGHTS = "bottleneck_adapter.safetensors"
ADAPTER_CONFIG = "bottleneck_adapter_config.json"

# which Auto class loads which head: config.json's auto_map lists those that match the base class
_AUTO_CLASSES = {
    "AutoModel": "MODEL_MAPPING_NAMES",
    "AutoModelForSequenceClassification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForTokenClassification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForQuestionAnswering": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    "AutoModelForCausalLM": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "AutoModelForSeq2SeqLM": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "AutoModelForMaskedLM": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "AutoModelForImageClassification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
}


class BottleneckAdapter(nn.Module):
    """``h + up(act(down(h)))``: ``width -> size -> width`` with a residual; ``up`` starts at 0."""

    def __init__(self, width: int, size: int, activation: str = "relu") -> None:
        super().__init__()
        self.down = nn.Linear(width, size)
        self.act = ACT2FN[activation]
        self.up = nn.Linear(size, width)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # near-identity start: the base model's outputs exactly
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (..., width) -> (..., width)
        return h + self.up(self.act(self.down(h)))


def _apply_adapter(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    # a module-level function (not a closure), so deep copies of the model use their own adapters
    return getattr(module, CHILD)(output)


def _output_width(name: str, module: nn.Module) -> int:
    for attr in ("out_features", "nf"):  # nn.Linear; transformers' Conv1D (GPT-2)
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    raise ValueError(
        f"bottleneck adapter: {name} ({type(module).__name__}) is not a linear layer; "
        "target the feed-forward block's output projection"
    )


def add_bottleneck_adapters(
    model: PreTrainedModel,
    size: int,
    activation: str = "relu",
    target_modules: str = "",
    modules_to_save: list[str] | None = None,
    base_model_name_or_path: str | None = None,
) -> list[str]:
    """Insert an adapter after every module whose full name matches the regex ``target_modules``.

    Changes ``model`` in place (its class and its config's class too, so that it saves and
    loads as an adapted model) and returns the adapted modules' names.
    """
    if activation not in ACT2FN:
        raise ValueError(f"bottleneck adapter: unknown activation {activation!r}")
    pattern = re.compile(target_modules)
    targets = [(n, m) for n, m in model.named_modules() if n and pattern.search(n)]
    if not targets:
        raise ValueError(f"bottleneck adapter: no module name matches {target_modules!r}")
    for name, module in targets:
        if hasattr(module, CHILD):
            raise ValueError(f"bottleneck adapter: {name} already has an adapter")
        adapter = BottleneckAdapter(_output_width(name, module), size, activation)
        weight = next(module.parameters())
        module.add_module(CHILD, adapter.to(device=weight.device, dtype=weight.dtype))
        module.register_forward_hook(_apply_adapter)
    settings = {
        "size": size,
        "activation": activation,
        "target_modules": target_modules,
        "modules_to_save": list(modules_to_save or []),
        "base_model_name_or_path": base_model_name_or_path,
    }
    if not type(model).__name__.endswith(SUFFIX):
        model.config.__class__ = config_with_adapters(type(model.config))
        model.__class__ = with_adapters(type(model))
    setattr(model.config, CONFIG_KEY, settings)
    return [n for n, _ in targets]


def adapter_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The adapter's tensors: every bottleneck adapter plus the modules in ``modules_to_save``."""
    keep = tuple(f"{m}." for m in getattr(model.config, CONFIG_KEY)["modules_to_save"])
    return {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if f".{CHILD}." in k or k.startswith(keep)
    }


def load_bottleneck_adapter(model: PreTrainedModel, directory: str | Path) -> PreTrainedModel:
    """Add the adapter saved in ``directory`` to its base ``model`` (the same head) and load it."""
    directory = Path(directory)
    settings = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    add_bottleneck_adapters(model, **settings)
    tensors = load_file(directory / ADAPTER_WEIGHTS)
    expected = set(adapter_state_dict(model))
    if set(tensors) != expected:
        raise ValueError(
            f"bottleneck adapter in {directory} does not fit this model: missing "
            f"{sorted(expected - set(tensors))[:5]}, unexpected {sorted(set(tensors) - expected)[:5]}"
        )
    model.load_state_dict(tensors, strict=False)
    return model


def register_auto_classes(directory: str | Path) -> bool:
    """Register the adapted classes of the model saved in ``directory`` with transformers' Auto
    classes, in this process; returns whether it is an adapted model at all.

    Afterwards ``AutoConfig``/``AutoModelFor<head>.from_pretrained(directory)`` build
    ``<Base>WithBottleneckAdapters`` from this module (transformers prefers a registered
    ``model_type`` to the directory's ``auto_map`` unless remote code is trusted), so the
    copy of this file in ``directory`` is never imported. Idempotent.
    """
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_file = Path(directory) / "config.json"
    if not config_file.is_file():
        return False
    model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type") or ""
    base_type = model_type.removesuffix(MODEL_TYPE_SUFFIX)
    if base_type == model_type or base_type not in CONFIG_MAPPING:
        return False
    config_class = config_with_adapters(CONFIG_MAPPING[base_type])
    transformers.AutoConfig.register(model_type, config_class, exist_ok=True)
    for auto, table in _AUTO_CLASSES.items():
        names = getattr(modeling_auto, table, {}).get(base_type)
        name = names if isinstance(names, str) else (names or (None,))[0]
        base = getattr(transformers, name, None) if name else None
        if base is not None:
            getattr(transformers, auto).register(config_class, with_adapters(base), exist_ok=True)
    return True


class _SavesAdapters:
    """Mixed into ``<Base>WithBottleneckAdapters``: saving writes this file and the adapter too."""

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> Any:
        directory = Path(save_directory)
        base = type(self).adapted_class
        module = Path(__file__).stem
        model_type = type(self.config).model_type.removesuffix(MODEL_TYPE_SUFFIX)
        auto_map = {"AutoConfig": f"{module}.{type(self.config).__name__}"}
        for auto, table in _AUTO_CLASSES.items():
            names = getattr(modeling_auto, table, {}).get(model_type)
            if base.__name__ in ((names,) if isinstance(names, str) else names or ()):
                auto_map[auto] = f"{module}.{type(self).__name__}"
        self.config.auto_map = auto_map
        out = super().save_pretrained(directory, *args, **kwargs)
        shutil.copyfile(__file__, directory / f"{module}.py")
        save_file(adapter_state_dict(self), directory / ADAPTER_WEIGHTS)
        settings = getattr(self.config, CONFIG_KEY)
        (directory / ADAPTER_CONFIG).write_text(json.dumps(settings, indent=2) + "\n")
        return out


@functools.cache
def config_with_adapters(base: type) -> type:
    """``<BaseConfig>WithBottleneckAdapters``: the base config with its own ``model_type``."""
    name = base.__name__ + SUFFIX
    cls = type(
        name, (base,), {"__module__": __name__, "model_type": base.model_type + MODEL_TYPE_SUFFIX}
    )
    globals()[name] = cls  # where transformers (getattr) and pickle look it up
    return cls


@functools.cache
def with_adapters(base: type) -> type:
    """``<BaseModel>WithBottleneckAdapters``: builds the base model, then adds its adapters."""

    def __init__(self: PreTrainedModel, config: Any, *args: Any, **kwargs: Any) -> None:
        adapted = type(config)
        # generic heads (Llama's classifier) build their body with AutoModel.from_config, which
        # knows only the base config class: build under it, then restore the adapted class
        config.__class__ = base.config_class
        try:
            base.__init__(self, config, *args, **kwargs)
        finally:
            config.__class__ = adapted
        add_bottleneck_adapters(self, **getattr(config, CONFIG_KEY))

    name = base.__name__ + SUFFIX
    attrs = {
        "__module__": __name__,
        "__init__": __init__,
        "config_class": config_with_adapters(base.config_class),
        "adapted_class": base,
    }
    cls = type(name, (_SavesAdapters, base), attrs)
    globals()[name] = cls  # where transformers (getattr) and pickle look it up
    return cls


def __getattr__(name: str) -> type:
    """``BertForSequenceClassificationWithBottleneckAdapters`` and friends, made on first use.

    transformers looks the classes named in config.json's ``auto_map`` up in this module.
    """
    import transformers

    base = getattr(transformers, name.removesuffix(SUFFIX), None) if name.endswith(SUFFIX) else None
    if base is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if issubclass(base, PreTrainedModel):
        return with_adapters(base)
    return config_with_adapters(base)
