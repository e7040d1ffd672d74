"""The evaluate stage and ``lmforge evaluate``: a saved model scored on test data, plus what
serving it costs (parameters, size on disk, latency at batch 1 and 32, peak RSS).

The model is loaded back from disk in plain transformers/peft (``load_artifact``), so the
numbers are those of the artefact a user ships, not of the object left in memory by training.
Its task, label space and prediction settings come from its manifest (``lmforge.json``), not
from re-reading the training data.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.core.errors import DataError, LmforgeError
from lmforge.core.log import logger
from lmforge.core.metrics import numbers
from lmforge.core.stage import StageContext, StageResult, StageSpec
from lmforge.data.document import Document
from lmforge.evaluate.config import EvaluateConfig
from lmforge.finetune.config import FinetuneConfig

if TYPE_CHECKING:
    from lmforge.tasks.artifact import ArtifactFiles


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


# the finetune settings a task's encode/predict read (method: prompt tuning's virtual tokens)
SCORING_FIELDS = (
    "method",
    "method_config",
    "max_length",
    "batch_size",
    "doc_stride",
    "generation_max_tokens",
)


def scoring_config(
    files: ArtifactFiles,
    recipe: FinetuneConfig | None = None,
    *,
    trust_remote_code: bool = False,
    **overrides: Any,
) -> FinetuneConfig:
    """How the task encodes and predicts for this model: what its manifest recorded (method,
    max length, generation limits), else ``recipe``'s, then the non-None ``overrides``.

    Raises:
        LmforgeError: a value the finetune schema rejects, naming the field.
    """
    from pydantic import ValidationError

    assert files.task is not None
    values = recipe.model_dump(include=set(SCORING_FIELDS)) if recipe is not None else {}
    if files.manifest is not None:
        m = files.manifest
        recorded = {**m.settings, "method": m.method, "max_length": m.max_length}
        values.update({k: v for k, v in recorded.items() if k in SCORING_FIELDS and v is not None})
    values.update({k: v for k, v in overrides.items() if v is not None})
    # load_artifact loads the model; model.path only has to name a loadable directory
    model = {"path": str(files.base or files.path), "trust_remote_code": trust_remote_code}
    try:
        return FinetuneConfig(task=files.task.name, model=model, **values)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise LmforgeError(f"evaluate: {where}: {first['msg']}") from None


def evaluate_model(
    files: ArtifactFiles,
    docs: list[Document],
    fcfg: FinetuneConfig,
    ecfg: EvaluateConfig,
    out: Path,
    title: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Score the saved model ``files`` on ``docs`` and profile it; writes predictions and plots
    into ``out``. ``fcfg`` is how to encode and predict (``scoring_config``)."""
    from lmforge.evaluate.profile import dir_megabytes, load_for_eval, profile_in_fresh_process
    from lmforge.tasks.data import write_predictions

    task, info, path = files.task, files.info, files.path
    assert task is not None
    if ecfg.max_examples:
        docs = docs[: ecfg.max_examples]
    if not docs:
        raise DataError("evaluate: no test examples")
    from lmforge.core.hardware import stage_device

    device = stage_device(ecfg.device, "evaluate.device")
    trust = fcfg.model.trust_remote_code  # the user's explicit flag, never implied
    model, processor, trainable = load_for_eval(task, path, info, trust_remote_code=trust)
    model.to(device)
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
    metrics: dict[str, Any] = {
        **numbers(scores),
        **{k: scores[k] for k in ("per_class", "per_type") if k in scores},
        "test_examples": len(docs),
        "truncated_test": enc.truncated,
        "total_params": sum(p.numel() for p in model.parameters()),
        "trainable_params": trainable,
        "size_mb": dir_megabytes(path),
        "predict_seconds": predict_seconds,
        "device": str(device),
    }
    if files.base is not None:
        metrics["base_size_mb"] = dir_megabytes(files.base)
    del model
    if ecfg.profile:
        batches = _batches(task, enc, ecfg.latency_batch_sizes)
        metrics.update(
            profile_in_fresh_process(
                task.name, path, info, batches, ecfg.latency_repeats, trust_remote_code=trust
            )
        )
    return metrics, artifacts


def scored_split(fcfg: FinetuneConfig, ctx: StageContext) -> list[Document]:
    """The split the finetune stage scored: its test split, else its val split (as there)."""
    from lmforge.tasks.data import load_split

    for split in ("test", "val"):
        docs = load_split(fcfg, ctx, split)
        if docs:
            return docs
    raise DataError(
        "evaluate: no test examples; give evaluate.test, finetune.data.test or a data section "
        "with a test split"
    )


def run_evaluate_stage(ctx: StageContext, out: Path) -> StageResult:
    from lmforge.data.sources import LoadStats, load_source
    from lmforge.models import resolve_model_ref
    from lmforge.tasks import TASKS
    from lmforge.tasks.artifact import inspect_artifact
    from lmforge.tasks.data import labelled_source, load_labelled

    ecfg, fcfg = ctx.recipe.evaluate, ctx.recipe.finetune
    assert ecfg is not None and fcfg is not None  # the recipe validator requires both
    path = resolve_model_ref(ecfg.model, ctx.root)
    files = inspect_artifact(path, task=fcfg.task)  # the label space from its lmforge.json
    if files.info is None:  # a model saved elsewhere: the fine-tune's labels, in its order
        info = TASKS.get(fcfg.task).prepare(load_labelled(fcfg, ctx))
        files = dataclasses.replace(files, info=align_labels(info, files.path))
    if ecfg.test is not None:  # read as finetune.data's files are: its columns and encoding
        docs = load_source(labelled_source(fcfg, ecfg.test), LoadStats())
    else:
        docs = scored_split(fcfg, ctx)
    logger.info("evaluate: %s on %d test examples", path, len(docs))
    scoring = scoring_config(files, fcfg, trust_remote_code=fcfg.model.trust_remote_code)
    metrics, artifacts = evaluate_model(
        files, docs, scoring, ecfg, out, f"{ctx.recipe.name}: evaluate"
    )
    metrics["model"] = str(path.relative_to(ctx.root) if path.is_relative_to(ctx.root) else path)
    ctx.metrics.log_dict("evaluate", metrics)
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
    if recipe.evaluate.model == "finetune":
        from lmforge.finetune.stage import check_saved_model

        check_saved_model(recipe, "evaluate.model")


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
