"""Loading a model with a task head, shared by the tasks.

A starting checkpoint rarely has the head a task needs (MiniLM is a bare encoder; a model
fine-tuned for 5 topics has a 5-way head): transformers initialises what is missing, and a
head of another size is started afresh (``ignore_mismatched_sizes``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError


def load_head(auto_class: Any, path: Path | str, task: str, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(path, **kwargs)``; an architecture without that head is a
    clear error naming the task instead of transformers' mapping dump."""
    # a model lmforge saved with bottleneck adapters carries its own self-contained code
    trust = (Path(path) / "modeling_bottleneck_adapter.py").exists()
    try:
        return auto_class.from_pretrained(
            path, ignore_mismatched_sizes=True, trust_remote_code=trust, **kwargs
        )
    except ValueError as e:
        if "Unrecognized configuration class" not in str(e):
            raise
        model_type = str(e).split("class <class '")[-1].split("'>")[0].rsplit(".", 1)[-1]
        raise LmforgeError(
            f"finetune.model: {model_type} has no {auto_class.__name__.removeprefix('AutoModelFor')} "
            f"head, so it cannot do the {task!r} task; pick a model that can "
            "(e.g. an encoder such as minilm-l6 for classification/NER/QA, a decoder such as "
            "smollm2-135m for instruction)"
        ) from None


def label_config(labels: list[str], multi_label: bool | None = None) -> dict[str, Any]:
    """Config fields naming a head's outputs, so a saved model predicts label names; with
    ``multi_label`` also the problem type (sigmoid per label vs softmax over labels)."""
    out: dict[str, Any] = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }
    if multi_label is not None:
        kind = "multi_label" if multi_label else "single_label"
        out["problem_type"] = f"{kind}_classification"
    return out


def encoder_from_preset(
    preset: str, tokenizer_dir: Path | None, load: Callable[[Path], Any]
) -> tuple[Any, Any]:
    """A freshly initialised encoder preset (bert-tiny, ...) sized to the run's tokenizer, with
    the task's head: ``load`` is the task's ``load_model`` on a directory holding it."""
    from lmforge.models.build import build_model, special_token_ids
    from lmforge.models.spec import ModelSpec

    tokenizer = _run_tokenizer(tokenizer_dir, preset)
    body = build_model(
        ModelSpec(preset=preset), "mlm", len(tokenizer), special_token_ids(tokenizer)
    )
    with tempfile.TemporaryDirectory() as tmp:
        body.save_pretrained(tmp)
        return load(Path(tmp)), tokenizer


def _run_tokenizer(tokenizer_dir: Path | None, preset: str) -> Any:
    from lmforge.tasks.base import load_tokenizer

    if tokenizer_dir is None or not (tokenizer_dir / "tokenizer.json").exists():
        raise LmforgeError(
            f"finetune.model.preset: {preset!r} is trained from scratch and needs this run's "
            "tokenizer; add a tokenizer section to the recipe"
        )
    return load_tokenizer(tokenizer_dir)
