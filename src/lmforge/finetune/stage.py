"""Entry point of the finetune stage: labelled data -> model + method -> train -> test -> save.

Outputs (in the stage directory):
    model/             the fine-tuned model: a peft adapter (PEFT methods; loads with
                       ``PeftModel.from_pretrained``) or a full model, plus its tokenizer or
                       image processor
    merged/            with ``merge: true``: adapter merged into a plain transformers model
    base/              a PEFT method on a preset or for a labelled task: the initial model it
                       adapts, task head and labels included (the adapter's base)
    lmforge.json       in model/, merged/ and base/: the manifest ``load_artifact`` reads (task,
                       label space, columns, method; an adapter's base relative to the run)
    predictions.jsonl  test-split predictions next to their references
    *.png              the task's plots (classification: confusion.png)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger
from lmforge.core.manifest import Kind, Manifest, write_manifest
from lmforge.core.metrics import numbers
from lmforge.core.stage import StageContext, StageResult, StageSpec
from lmforge.finetune.config import FinetuneConfig
from lmforge.tasks.data import load_labelled, write_predictions

if TYPE_CHECKING:
    import torch

    from lmforge.tasks.base import Encoded, Splits, Task


def model_dir(cfg: FinetuneConfig, ctx: StageContext) -> Path:
    from lmforge.models import resolve_model_ref

    assert cfg.model.path is not None
    return resolve_model_ref(cfg.model.path, ctx.root)


def starting_model(task: Task, cfg: FinetuneConfig, ctx: StageContext, info: Any) -> tuple:
    """(model with the task head, tokenizer or image processor)."""
    if cfg.model.preset is not None:
        return task.build_from_preset(cfg.model.preset, info, ctx.stage_dir("tokenizer"))
    path = model_dir(cfg, ctx)
    processor = task.load_processor(path)
    model = task.load_model(path, info, trust_remote_code=cfg.model.trust_remote_code)
    return model, processor


@dataclass
class Trained:
    """What ``train_and_test`` returns: the trained model and its test results."""

    model: Any
    encoded: dict[str, Encoded]
    predictions: list[Any]
    scores: dict[str, Any]
    history: list[dict[str, float]]
    trainable: int
    total: int
    train_seconds: float
    precision: str  # what training ran in ('auto' resolved)


def train_and_test(
    task: Task,
    cfg: FinetuneConfig,
    splits: Splits,
    info: Any,
    model: Any,
    processor: Any,
    seed: int,
    device: torch.device | None = None,
) -> Trained:
    """Apply the method, train on ``splits["train"]`` (on ``device``, default CPU), predict and
    score ``splits["test"]``."""
    import torch

    from lmforge.core.precision import model_hidden_size, resolve_precision
    from lmforge.finetune.methods import apply_method, trainable_parameters
    from lmforge.finetune.train import fit
    from lmforge.models.positions import fit_positions
    from lmforge.tasks.base import TaskOptions

    fit_positions(model, cfg.max_length)  # before encoding: a too-long max_length fails now
    opts = TaskOptions.of(cfg)
    encoded = {s: task.encode(processor, docs, info, opts, s) for s, docs in splits.items() if docs}
    for split, enc in encoded.items():
        if enc.truncated:
            logger.warning(
                "finetune: %d of %d '%s' %s (finetune.max_length=%d)",
                enc.truncated,
                len(splits[split]),
                split,
                enc.truncation,
                cfg.max_length,
            )
    steps = cfg.epochs * -(-len(encoded["train"]) // cfg.batch_size)
    model = apply_method(cfg.method, model, cfg.method_config, task.peft_task, steps)
    if cfg.head == "crf":  # BERT-CRF: the CRF trains on top of whatever the method trains
        from lmforge.tasks.token_classification import crf_head

        model = crf_head(model, info, encoded["train"])
    trainable, total = trainable_parameters(model)
    logger.info(
        "finetune: %s %s on %d examples, %s trainable of %s params",
        cfg.task,
        cfg.method,
        len(splits["train"]),
        f"{trainable:,}",
        f"{total:,}",
    )
    device = device or torch.device("cpu")
    tokens = cfg.batch_size * cfg.max_length
    hidden = model_hidden_size(model)
    choice = resolve_precision(cfg.precision, device, tokens, hidden, who="finetune")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    history = fit(
        model,
        encoded["train"],
        encoded.get("val"),
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=seed,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        device=device,
        precision=choice.precision,
        group_by_length=cfg.group_by_length,
        keep_best=cfg.keep_best,
    )
    train_seconds = time.perf_counter() - t0
    test = encoded["test"]
    predictions = task.predict(model, test, processor, info, opts)
    scores = task.metrics(test.references, predictions, info)
    return Trained(
        model,
        encoded,
        predictions,
        scores,
        history,
        trainable,
        total,
        train_seconds,
        choice.precision,
    )


def run_finetune_stage(ctx: StageContext, out: Path) -> StageResult:
    import torch

    from lmforge.finetune.methods import METHODS
    from lmforge.tasks import TASKS

    cfg = ctx.recipe.finetune
    assert cfg is not None
    if not METHODS.get(cfg.method).trains or (cfg.fewshot is not None and cfg.fewshot.curve):
        from lmforge.finetune.fewshot import run_fewshot

        return run_fewshot(ctx, out)
    from lmforge.core.hardware import stage_device
    from lmforge.data.sources import LoadStats

    task = TASKS.get(cfg.task)
    device = stage_device(cfg.device, "finetune.device")
    loaded: dict[str, LoadStats] = {}
    splits = load_labelled(cfg, ctx, loaded)
    if cfg.fewshot is not None and cfg.fewshot.shots:
        from lmforge.finetune.fewshot import k_shot

        splits["train"] = k_shot(splits["train"], cfg.fewshot.shots, ctx.recipe.seed)
    augmented = 0
    if cfg.augment is not None:  # perturbed copies, labels kept (explain's attacks)
        from lmforge.explain.attacks.augment import adversarial_augment

        before = len(splits["train"])
        splits["train"] = adversarial_augment(
            splits["train"], cfg.augment, share=cfg.augment_share, seed=ctx.recipe.seed
        )
        augmented = len(splits["train"]) - before
        logger.info("finetune: %d %s-perturbed copies added to training", augmented, cfg.augment)
    info = task.prepare(splits)
    torch.manual_seed(ctx.recipe.seed)
    model, processor = starting_model(task, cfg, ctx, info)
    uses_peft = METHODS.get(cfg.method).uses_peft
    keep_base = uses_peft and (cfg.model.preset is not None or hasattr(info, "labels"))
    if keep_base:
        save_artifact(out / "base", model, processor, manifest(cfg, info, "base"))
    run = train_and_test(task, cfg, splits, info, model, processor, ctx.recipe.seed, device)
    for record in run.history:
        ctx.metrics.log_dict(
            "finetune", {k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"]
        )

    base_ref = None
    if uses_peft:
        base_ref, base_dir = adapter_base(cfg, ctx, keep_base)
        for peft_config in run.model.peft_config.values():
            # peft reads the base's config while saving (has the vocabulary grown?): point at a
            # directory that exists now; point_adapter_at sets the final path after saving
            peft_config.base_model_name_or_path = str(out / "base" if keep_base else base_dir)
    kind: Kind = "adapter" if uses_peft else "full"
    save_artifact(out / "model", run.model, processor, manifest(cfg, info, kind, base_ref))
    if uses_peft:
        point_adapter_at(out / "model", base_dir)
    write_predictions(
        out / "predictions.jsonl", splits["test"], run.encoded["test"], run.predictions
    )
    artifacts = {"model": "model", "predictions": "predictions.jsonl"}
    if task.report is not None:
        artifacts.update(task.report(run.scores, info, out, f"{ctx.recipe.name}: test"))
    metrics: dict[str, Any] = {
        **numbers(run.scores),
        **{k: run.scores[k] for k in ("per_class", "per_type") if k in run.scores},
        "train_examples": len(splits["train"]),
        "augmented_examples": augmented,
        "test_examples": len(splits["test"]),
        "truncated_train": run.encoded["train"].truncated,
        "trainable_params": run.trainable,
        "total_params": run.total,
        "trainable_fraction": run.trainable / run.total,
        "train_seconds": run.train_seconds,
        "train_precision": run.precision,  # not "precision": NER's scores have one
        "undecodable_bytes": sum(s.undecodable_bytes for s in loaded.values()),
        "device": str(device),
        "history": run.history,
    }
    if cfg.keep_best:
        from lmforge.finetune.train import best_epoch

        kept = best_epoch(run.history)
        if kept is None:
            logger.warning("finetune.keep_best: no validation split; kept the last epoch")
        else:
            metrics["kept_epoch"] = kept
    if getattr(info, "labels", None) is not None:
        metrics["labels"] = info.labels
    if task.baseline is not None:
        metrics.update(baseline_metrics(task, splits, info, run.scores))
    if cfg.merge and uses_peft:
        merged = merge_adapter(run.model, run.encoded["test"], out / "merged", processor)
        write_manifest(out / "merged", manifest(cfg, info, "merged"))
        metrics["merge_max_abs_diff"] = merged
        artifacts["merged"] = "merged"
    ctx.metrics.log_dict("finetune", metrics)
    return StageResult(metrics=metrics, artifacts=artifacts)


def manifest(cfg: FinetuneConfig, info: Any, kind: Kind, base: str | None = None) -> Manifest:
    """The ``lmforge.json`` of ``finetune/<kind dir>``: everything a later stage or command
    needs to load and score the model without this recipe or its training data."""
    from lmforge.tasks.artifact import info_to_json

    return Manifest(
        kind=kind,
        location=f"finetune/{'model' if kind in ('adapter', 'full') else kind}",
        base=base,
        task=cfg.task,
        method=cfg.method,
        info=info_to_json(info),
        columns={
            "text": cfg.data.text_column,
            "label": cfg.data.label_column,
            "question": cfg.data.question_column,
        },
        max_length=cfg.max_length,
        settings=cfg.model_dump(
            mode="json",
            include={"method_config", "batch_size", "doc_stride", "generation_max_tokens"},
        ),
    )


def save_artifact(dest: Path, model: Any, processor: Any, manifest: Manifest) -> None:
    """A model directory that loads in plain transformers/peft, plus its manifest."""
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    write_manifest(dest, manifest)


def point_adapter_at(adapter: Path, base: Path) -> None:
    """Set the saved adapter's ``base_model_name_or_path``: plain peft
    (``AutoPeftModelFor*.from_pretrained(adapter)``) loads the base from there, relative to the
    current directory, so it is absolute and works in place from anywhere; ``load_artifact``
    reads the manifest's run-relative ``base`` instead, which survives moving the run."""
    import json

    from lmforge.core.atomic import write_json_atomic

    config = adapter / "adapter_config.json"
    raw = json.loads(config.read_text(encoding="utf-8"))
    raw["base_model_name_or_path"] = str(base)
    write_json_atomic(config, raw)


def adapter_base(cfg: FinetuneConfig, ctx: StageContext, kept: bool) -> tuple[str, Path]:
    """(the manifest's reference to the adapter's base, its absolute directory).

    The base is ``finetune/base`` when this stage keeps one: always for a preset (it exists
    nowhere else) and for a task with labels - plain peft builds the head from the base's
    config.json, which must then hold the label names and count (a bare encoder's would give a
    2-way head that the adapter's 3-way head does not fit), and the initial weights of a head
    or pooler the starting checkpoint lacks are kept rather than drawn afresh at each load.
    Otherwise it is the starting model: this run's pretrain/model, a built-in, or a directory.
    """
    from lmforge.tasks.artifact import base_reference

    if kept:
        return "finetune/base", (ctx.root / "finetune" / "base").resolve()
    assert cfg.model.path is not None  # a preset always keeps its base
    path = model_dir(cfg, ctx).resolve()
    return base_reference(cfg.model.path, path, ctx.root), path


def baseline_metrics(
    task: Task, splits: Splits, info: Any, scores: dict[str, Any]
) -> dict[str, Any]:
    """The classic baseline's test metrics and the model's ratio to them. A baseline is third-
    party code (scikit-learn, snownlp, crfsuite) fitted on the user's data and may fail where
    the model trained (TF-IDF's "no terms remain" on mis-decoded text): that costs the baseline,
    recorded as ``baseline.error``, never the trained model."""
    assert task.baseline is not None
    try:
        base = task.baseline(splits, info)
    except Exception as e:  # noqa: BLE001 - any failure of the optional baseline, see above
        logger.warning(
            "finetune: the %s baseline failed (%s: %s); the fine-tuned model is kept",
            task.name,
            type(e).__name__,
            e,
        )
        return {"baseline": {"error": f"{type(e).__name__}: {e}"}}
    if base is None:
        return {}
    out: dict[str, Any] = {"baseline": base}
    key = task.main_metric
    if key in scores and key in base:
        out[f"{key}_vs_baseline"] = scores[key] / max(base[key], 1e-9)
    return out


def merge_adapter(model: Any, test: Encoded, dest: Path, processor: Any) -> float:
    """Merge the adapter into the base weights, save, and return the max output difference."""
    import torch

    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in test.batch(list(range(min(16, len(test))))).items()}
    model.eval()
    with torch.no_grad():
        before = _outputs(model(**batch))
        try:
            merged = model.merge_and_unload()
        except (AttributeError, ValueError) as e:
            raise LmforgeError(f"finetune.merge: this method cannot be merged ({e})") from None
        if type(model).__name__ == "PeftModelForQuestionAnswering":
            _segment_zero_everywhere(merged)
        after = _outputs(merged(**batch))
        diff = max((a - b).abs().max().item() for a, b in zip(after, before, strict=True))
    merged.save_pretrained(dest)
    processor.save_pretrained(dest)
    return diff


def _segment_zero_everywhere(model: Any) -> None:
    """peft's QA wrapper (0.21) never passes ``token_type_ids`` on, so a QA adapter trained and
    predicts with segment 0 for question and context alike; the merged model, which a plain
    transformers user calls with the tokenizer's segment ids, must answer the same: every
    segment's embedding becomes segment 0's."""
    for name, module in model.named_modules():
        if name.endswith("token_type_embeddings"):
            module.weight.data[:] = module.weight.data[0]


def _outputs(out: Any) -> list[Any]:
    """The scores a head outputs: logits, or QA's start and end logits."""
    if getattr(out, "logits", None) is not None:
        return [out.logits]
    return [out.start_logits, out.end_logits]


def _inputs(recipe: Any) -> Any:
    from lmforge.core.hashing import fingerprint_path
    from lmforge.models import model_identity

    d = recipe.finetune.data
    files = [fingerprint_path(p) for p in (d.train, d.val, d.test) if p is not None]
    return {"files": files, "model": model_identity(recipe.finetune.model.path)}


def check_saved_model(recipe: Any, key: str) -> None:
    """Recipe-time check for a later stage whose ``key`` (e.g. ``evaluate.model``) is
    'finetune': the recipe fine-tunes, with a method that saves a model.

    Raises:
        ValueError: naming ``key`` (pydantic reports it as a recipe error).
    """
    from lmforge.finetune.methods import METHODS

    if recipe.finetune is None:
        raise ValueError(f"{key} is 'finetune' but the recipe has no finetune section")
    method = recipe.finetune.method
    if not METHODS.get(method).trains:
        raise ValueError(
            f"{key} is 'finetune' but finetune.method {method!r} trains and saves no model; "
            f"set {key} to a model directory"
        )


def _check(recipe: Any) -> None:
    ft = recipe.finetune
    if ft.model.path == "pretrain" and recipe.pretrain is None:
        raise ValueError(
            "finetune: model.path is 'pretrain' but the recipe has no pretrain section"
        )
    if ft.data.train is None and recipe.data is None:
        raise ValueError(
            "finetune: give finetune.data.train or a data section to take labelled splits from"
        )
    if ft.model.preset is not None and recipe.tokenizer is None:
        from lmforge.tasks import TASKS

        if TASKS.get(ft.task).preset_uses_tokenizer:
            raise ValueError(
                f"finetune: model.preset {ft.model.preset!r} is trained from scratch and needs "
                "this run's tokenizer; add a tokenizer section"
            )


SPEC = StageSpec(
    name="finetune",
    config=FinetuneConfig,
    description="Fine-tune a model on a task (full or parameter-efficient).",
    run=run_finetune_stage,
    inputs=_inputs,
    needs=("data", "tokenizer", "pretrain"),
    check=_check,
)
