"""Building and loading transformers models for a recipe: presets, built-ins, counts, FLOPs.

Importing this package is cheap (no torch, no transformers): the recipe schema imports
``PRESETS`` and ``check_model_path`` to validate a recipe before any work. The functions that
build models (``lmforge.models.build``, which imports torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lmforge.models.builtin import (
    BUILTIN_MODELS,
    BuiltinModel,
    cache_dir,
    check_model_path,
    resolve_model_path,
)
from lmforge.models.flops import count_params, flops_per_token
from lmforge.models.presets import PRESETS, ModelPreset
from lmforge.models.refs import check_model_ref, model_identity, resolve_model_ref

if TYPE_CHECKING:
    from lmforge.models.build import build_config, build_model, load_pretrained, special_token_ids

# name -> module, imported on first attribute access (PEP 562)
_LAZY = {
    "build_config": "lmforge.models.build",
    "build_model": "lmforge.models.build",
    "load_pretrained": "lmforge.models.build",
    "special_token_ids": "lmforge.models.build",
}

__all__ = [
    "BUILTIN_MODELS",
    "PRESETS",
    "BuiltinModel",
    "ModelPreset",
    "build_config",
    "build_model",
    "cache_dir",
    "check_model_path",
    "check_model_ref",
    "count_params",
    "flops_per_token",
    "load_pretrained",
    "model_identity",
    "resolve_model_path",
    "resolve_model_ref",
    "special_token_ids",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
