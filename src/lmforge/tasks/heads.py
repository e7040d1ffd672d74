"""Loading a model with a task head, shared by the tasks.

A starting checkpoint rarely has the head a task needs (MiniLM is a bare encoder; a model
fine-tuned for 5 topics has a 5-way head): for fine-tuning, transformers initialises what is
missing, and a head of another size is started afresh (``ignore_mismatched_sizes``). For
evaluation and inference that would score a random head, so ``for_inference`` refuses it.

A model directory's own Python (config.json ``auto_map``) never runs unless the user passed
``trust_remote_code`` (``finetune.model.trust_remote_code``, ``--trust-remote-code``):
lmforge's own architectures (bottleneck adapters) load from lmforge's code.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError


def register_own_architectures(path: Path | str) -> None:
    """Let transformers build lmforge's own saved architectures from lmforge's code, so that
    loading them needs no ``trust_remote_code``; other directories are left alone."""
    from lmforge.finetune.modeling_bottleneck_adapter import register_auto_classes

    register_auto_classes(path)


def remote_code_error(path: Path | str, error: ValueError) -> LmforgeError | None:
    """transformers' refusal to run a directory's code, as an error saying how to opt in."""
    if "trust_remote_code" not in str(error):
        return None
    return LmforgeError(
        f"{path} names its own Python code in config.json (auto_map), which lmforge never runs "
        "on its own; read that code, and only if you trust it set "
        "finetune.model.trust_remote_code: true (or pass --trust-remote-code)"
    )


def load_head(
    auto_class: Any,
    path: Path | str,
    task: str,
    *,
    trust_remote_code: bool = False,
    for_inference: bool = False,
    **kwargs: Any,
) -> Any:
    """``auto_class.from_pretrained(path, **kwargs)``; an architecture without that head is a
    clear error naming the task instead of transformers' mapping dump.

    Args:
        trust_remote_code: run the directory's own modeling code (its config.json
            ``auto_map``); only ever the user's explicit choice.
        for_inference: the model is scored or served, not trained: weights the checkpoint lacks
            (transformers' load report: missing or of another shape) are an error, not a
            fresh random initialisation.
    """
    register_own_architectures(path)
    try:
        model, report = auto_class.from_pretrained(
            path,
            ignore_mismatched_sizes=True,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
            **kwargs,
        )
    except ValueError as e:
        if (error := remote_code_error(path, e)) is not None:
            raise error from None
        if "Unrecognized configuration class" not in str(e):
            raise
        model_type = str(e).split("class <class '")[-1].split("'>")[0].rsplit(".", 1)[-1]
        raise LmforgeError(
            f"finetune.model: {model_type} has no {auto_class.__name__.removeprefix('AutoModelFor')} "
            f"head, so it cannot do the {task!r} task; pick a model that can "
            "(e.g. an encoder such as minilm-l6 for classification/NER/QA, a decoder such as "
            "smollm2-135m for instruction)"
        ) from None
    if for_inference:
        _check_complete(path, task, report)
    else:  # fine-tuning: say which modules start random, so adapters train and save them
        fresh = {key.rsplit(".", 1)[0] for key in report["missing_keys"]}
        fresh |= {key.rsplit(".", 1)[0] for key, _, _ in report["mismatched_keys"]}
        model.lmforge_initialised = tuple(sorted(fresh))
    return model


def head_loader(
    auto_class: str, task: str, head_config: Callable[[Any], dict[str, Any]] | None = None
) -> Callable[..., Any]:
    """A task's ``load_model(path, info, *, trust_remote_code, for_inference)`` for a task
    whose model is nothing but transformers' ``auto_class`` head: ``load_head`` with the
    config fields ``head_config(info)`` gives (label names). transformers loads on first use."""

    def load_model(
        path: Path, info: Any, *, trust_remote_code: bool = False, for_inference: bool = False
    ) -> Any:
        import transformers

        return load_head(
            getattr(transformers, auto_class),
            path,
            task,
            trust_remote_code=trust_remote_code,
            for_inference=for_inference,
            **(head_config(info) if head_config is not None else {}),
        )

    load_model.__doc__ = f"``{auto_class}``; the keywords are ``load_head``'s."
    return load_model


def _check_complete(path: Path | str, task: str, report: dict[str, Any]) -> None:
    """Refuse a model some of whose weights transformers had to initialise at random (a
    masked-LM or bare encoder directory has no classifier: it would score at chance)."""
    missing = sorted(report["missing_keys"])
    mismatched = sorted(
        f"{key} (saved {tuple(saved)}, needed {tuple(needed)})"
        for key, saved, needed in report["mismatched_keys"]
    )
    if not missing and not mismatched:
        return
    what = []
    if missing:
        what.append(f"lacks {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    if mismatched:
        what.append(f"has other shapes for {', '.join(mismatched[:3])}")
    raise LmforgeError(
        f"{path} has no trained head for the {task!r} task: its checkpoint {' and '.join(what)}, "
        "so those weights would be random and the scores those of chance. Evaluate a model "
        f"fine-tuned for {task!r} (e.g. a run's finetune/model), or fine-tune this one first"
    )


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
