"""The evaluate stage and ``lmforge evaluate``: a saved model scored on test data, plus what
serving it costs (parameters, size on disk, latency at batch 1 and 32, peak RSS).

The model is loaded back from disk in plain transformers/peft, so the numbers are those of the
artefact a user ships, not of the object left in memory by training.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError
from lmforge.core.log import logger
from lmforge.core.stage import StageContext, StageResult, StageSpec
from lmforge.data.document import Document
from lmforge.evaluate.config import EvaluateConfig
from lmforge.finetune.config import FinetuneConfig


def align_labels(info: Any, model_dir: Path) -> Any:
    """Use the label order the model was trained with (its config's id2label) when it has one."""
    import json

    config = model_dir / "config.json"
    if not dataclasses.is_dataclass(info) or not hasattr(info, "labels") or not config.exists():
        return info
    id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=int)]
    if not labels or labels == info.labels:
        return info
    unknown = sorted(set(info.labels) - set(labels))
    if unknown:
        raise DataError(
            f"evaluate: test labels {unknown} are not among the model's labels {labels}"
        )
    return dataclasses.replace(info, labels=labels)


def _batches(task: Any, enc: Any, sizes: list[int]) -> dict[int, dict[str, Any]]:
    """Real test inputs at each batch size (cycled when the test set is smaller)."""
    out = {}
    for size in sizes:
        batch = enc.batch([i % len(enc) for i in range(size)])
        if task.peft_task != "SEQ_2_SEQ_LM":  # a server runs no loss; seq2seq needs decoder inputs
            batch.pop("labels", None)
        batch.pop("example_id", None)
        out[size] = batch
    return out


def evaluate_model(
    task_name: str,
    path: Path,
    docs: list[Document],
    info: Any,
    fcfg: FinetuneConfig,
    ecfg: EvaluateConfig,
    out: Path,
    title: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Score ``path`` on ``docs`` and profile it; writes predictions and plots into ``out``."""
    from lmforge.evaluate.profile import (
        adapter_base,
        dir_megabytes,
        load_for_eval,
        profile_in_fresh_process,
    )
    from lmforge.tasks import TASKS
    from lmforge.tasks.data import write_predictions

    task = TASKS.get(task_name)
    if ecfg.max_examples:
        docs = docs[: ecfg.max_examples]
    if not docs:
        raise DataError("evaluate: no test examples")
    info = align_labels(info, path)
    model, processor, trainable = load_for_eval(task, path, info)
    enc = task.encode(processor, docs, info, fcfg, "test")
    t0 = time.perf_counter()
    predictions = task.predict(model, enc, processor, info, fcfg)
    predict_seconds = time.perf_counter() - t0
    scores = task.metrics(enc.references, predictions, info)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.jsonl", docs, enc, predictions)
    artifacts = {"predictions": "predictions.jsonl"}
    if task.report is not None:
        artifacts.update(task.report(scores, info, out, title))
    base = adapter_base(path)
    metrics: dict[str, Any] = {
        **{k: v for k, v in scores.items() if isinstance(v, int | float)},
        **{k: scores[k] for k in ("per_class", "per_type") if k in scores},
        "test_examples": len(docs),
        "truncated_test": enc.truncated,
        "total_params": sum(p.numel() for p in model.parameters()),
        "trainable_params": trainable,
        "size_mb": dir_megabytes(path),
        "predict_seconds": predict_seconds,
    }
    if base is not None:
        metrics["base_size_mb"] = dir_megabytes(base)
    del model
    if ecfg.profile:
        batches = _batches(task, enc, ecfg.latency_batch_sizes)
        metrics.update(
            profile_in_fresh_process(task_name, path, info, batches, ecfg.latency_repeats)
        )
    return metrics, artifacts


def run_evaluate_stage(ctx: StageContext, out: Path) -> StageResult:
    from lmforge.data.config import SourceConfig
    from lmforge.data.sources import LoadStats, load_source
    from lmforge.models import resolve_model_ref
    from lmforge.tasks import TASKS
    from lmforge.tasks.data import load_labelled

    ecfg, fcfg = ctx.recipe.evaluate, ctx.recipe.finetune
    assert ecfg is not None and fcfg is not None  # the recipe validator requires both
    task = TASKS.get(fcfg.task)
    splits = load_labelled(fcfg, ctx)
    info = task.prepare(splits)  # the fine-tune's own label set, in its order
    if ecfg.test is not None:
        src = SourceConfig(
            path=ecfg.test,
            text_column=fcfg.data.text_column,
            label_column=fcfg.data.label_column,
            question_column=fcfg.data.question_column if fcfg.task == "extractive-qa" else None,
        )
        docs = load_source(src, LoadStats())
    else:
        docs = splits["test"]
    path = resolve_model_ref(ecfg.model, ctx.root)
    logger.info("evaluate: %s on %d test examples", path, len(docs))
    metrics, artifacts = evaluate_model(
        fcfg.task, path, docs, info, fcfg, ecfg, out, f"{ctx.recipe.name}: evaluate"
    )
    metrics["model"] = str(path.relative_to(ctx.root) if path.is_relative_to(ctx.root) else path)
    ctx.metrics.log_dict(
        "evaluate", {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    )
    return StageResult(metrics=metrics, artifacts=artifacts)


def _inputs(recipe: Any) -> Any:
    from lmforge.core.hashing import fingerprint_path
    from lmforge.models import model_identity

    test = recipe.evaluate.test
    return {
        "test": fingerprint_path(test) if test else None,
        "model": model_identity(recipe.evaluate.model),
    }


def _check(recipe: Any) -> None:
    if recipe.finetune is None:
        raise ValueError("evaluate: needs a finetune section (its task, data columns and model)")
    from lmforge.finetune.fewshot_config import INFERENCE_METHODS

    if recipe.evaluate.model == "finetune" and recipe.finetune.method in INFERENCE_METHODS:
        raise ValueError(
            f"evaluate: finetune.method {recipe.finetune.method!r} trains and saves no model; "
            "set evaluate.model to a model directory or drop the evaluate section"
        )


SPEC = StageSpec(
    name="evaluate",
    config=EvaluateConfig,
    description="Score the fine-tuned model on test data; size, latency, peak memory.",
    run=run_evaluate_stage,
    inputs=_inputs,
    needs=("data", "finetune"),
    check=_check,
    command=False,  # `lmforge evaluate MODEL_DIR` scores any saved model
)
