"""Model references in a recipe: one resolver for every stage that starts from a model.

A reference is a model directory, a built-in model name (``minilm-l6``), or the name of an
earlier stage of the same run (``pretrain``, ``finetune``) whose saved model is meant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.models.builtin import check_model_path, resolve_model_path

# stage name -> sub-directories of its output that hold a model, in order of preference
STAGE_MODELS: dict[str, tuple[str, ...]] = {
    "pretrain": ("model",),
    "finetune": ("merged", "model"),  # the merged model when saved, else the adapter/full model
}


def check_model_ref(ref: str) -> None:
    """Recipe-time check (cheap, no torch); ``ValueError`` if ``ref`` cannot name a model.

    A stage reference passes here; the recipe checks that the stage is configured.
    """
    if ref not in STAGE_MODELS:
        check_model_path(ref)


def resolve_model_ref(ref: str, root: Path | None = None) -> Path:
    """The local model directory ``ref`` names; ``root`` is the run directory for stage refs.

    Raises:
        LmforgeError: the stage saved no model yet, or the path/name names no model.
    """
    if ref not in STAGE_MODELS:
        return resolve_model_path(ref)
    if root is None:
        raise LmforgeError(f"model {ref!r} names a stage of a run; give a model directory instead")
    for name in STAGE_MODELS[ref]:
        path = root / ref / name
        if (path / "config.json").exists() or (path / "adapter_config.json").exists():
            return path
    raise LmforgeError(f"the model is {ref!r} but the {ref} stage of {root} has saved no model")


def model_identity(ref: str | None) -> Any:
    """What a stage's content hash records for a model: a directory's fingerprint, else the
    reference itself (a built-in name, or a stage name whose own hash is already upstream)."""
    from lmforge.core.hashing import fingerprint_path

    return fingerprint_path(ref) if ref is not None and Path(ref).is_dir() else ref
