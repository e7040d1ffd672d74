"""The compress stage (``lmforge compress RECIPE``): the fine-tuned model through a list of
compression steps, every artefact scored side by side. A pretrain stage's causal LM (no
finetune section) is distilled on the run's corpus and scored by held-out perplexity
(``compress.lm``).

Outputs (in the stage directory):
    <step name>/     each step's artefact: config.json, tokenizer, weights (safetensors,
                     model.onnx or model_int8.pt) and lmforge.json (see compress.artifact)
    pareto.json      per artefact (the source first): quality, parameters, size on disk,
                     latency p50/p95 at each batch size, throughput, peak RSS, what the step
                     did; and ``pareto``: the artefacts no other beats on quality, latency
                     and size at once
    tradeoff.png     quality vs latency, marker area = size on disk
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.compress.artifact import Compressed
from lmforge.compress.config import CompressConfig
from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger
from lmforge.core.stage import StageContext, StageResult, StageSpec


def check_steps(cfg: CompressConfig, task: str, source_format: str) -> None:
    """Every step's method supports the task and its input's format: known before any work.

    Raises:
        LmforgeError: naming the step and field.
    """
    from lmforge.compress.methods import load_methods

    methods = load_methods()
    formats: dict[str, str] = {"source": source_format}
    last = source_format
    for i, step in enumerate(cfg.steps):
        method = methods.get(step.method)
        where = f"compress.steps.{i} ({step.method})"
        if task not in method.tasks:
            raise LmforgeError(
                f"{where}.method: {step.method} supports the {', '.join(method.tasks)} task(s), "
                f"not {task!r}"
            )
        if method.check is not None:
            try:
                method.check(step, task)
            except ValueError as e:
                raise LmforgeError(f"{where}.{e}") from None
        fmt = last if step.input == "previous" else formats[step.input]
        if fmt not in method.formats(step):
            raise LmforgeError(
                f"{where}.input: {step.method} reads {' or '.join(method.formats(step))} models, and "
                f"its input is {fmt}; reorder the steps or set input: source"
            )
        last = formats[step.name] = _output_format(step, fmt)


def _output_format(step: Any, fmt: str) -> str:
    if step.method == "export":
        return step.format
    if step.method == "quantize" and step.scheme == "int8-dynamic":
        return "onnx" if step.engine == "onnxruntime" else "torch-int8"
    if step.method == "quantize" and step.scheme in ("int8-weight", "int4-weight"):
        return "weight-only"
    return fmt


def _train_data(ctx: StageContext, fcfg: Any, source: Path) -> Any:
    """() -> (train, val) of the finetune stage's data (``ctx.recipe.finetune``), encoded with
    the source's tokenizer and ``fcfg`` (its scoring settings): loaded once, on first use."""
    cache: list[Any] = []

    def load() -> Any:
        if not cache:
            from lmforge.compress.artifact import load_compressed
            from lmforge.tasks.data import load_labelled

            splits = load_labelled(ctx.recipe.finetune, ctx)
            _, processor, task, info = load_compressed(source)
            val = splits["val"] or None
            cache.append(
                (
                    task.encode(processor, splits["train"], info, fcfg, "train"),
                    task.encode(processor, val, info, fcfg, "val") if val else None,
                )
            )
        return cache[0]

    return load


def run_compress_stage(ctx: StageContext, out: Path) -> StageResult:
    from lmforge.compress.artifact import artifact_format
    from lmforge.compress.score import (
        footprint,
        input_batches,
        pareto_front,
        plot_tradeoff,
        profile,
        quality,
    )
    from lmforge.core.atomic import write_json_atomic
    from lmforge.evaluate.stage import scored_split, scoring_config
    from lmforge.models import resolve_model_ref
    from lmforge.tasks.artifact import inspect_artifact

    cfg: CompressConfig = ctx.recipe.compress
    source_path = resolve_model_ref(cfg.model, ctx.root)
    files = inspect_artifact(source_path)
    source = artifact_format(source_path)
    check_steps(cfg, files.task.name if files.task else "pretrained", source.format)
    if files.task is None and _gguf_only(cfg):  # a pretrained LM exported to GGUF
        return _export_only(ctx, cfg, source, out)
    if files.task is None:  # a pretrained causal LM: the corpus, scored by perplexity
        from lmforge.compress.lm import corpus, lm_batches, lm_quality

        check_causal_lm(cfg, source)
        train, held = corpus(ctx, source, cfg.max_examples)
        fcfg, train_data, n_scored = None, lambda: (train, held), len(held)
        batches = lm_batches(held, cfg.latency_batch_sizes)

        def score(path: Path) -> dict[str, Any]:
            return lm_quality(path, held)
    else:
        fcfg = scoring_config(files, ctx.recipe.finetune)
        docs = scored_split(ctx.recipe.finetune, ctx)[: cfg.max_examples]
        train_data, n_scored = _train_data(ctx, fcfg, source_path), len(docs)
        # the same input tensors for every artefact
        batches = input_batches(source_path, docs, fcfg, cfg.latency_batch_sizes)

        def score(path: Path) -> dict[str, Any]:
            return quality(path, docs, fcfg)

    made: dict[str, Compressed] = {"source": source}
    steps: dict[str, Any] = {}
    last = source
    for i, step in enumerate(cfg.steps):
        given = last if step.input == "previous" else made[step.input]
        last, steps[step.name] = _run_step(ctx, i, step, given, out, train_data, fcfg)
        made[step.name] = last
    # score every artefact on the same test examples (held-out blocks)
    points, unscored = [], []
    for name, art in made.items():
        logger.info("compress: scoring %s", name)
        if art.format == "gguf" and files.task is not None:  # the step checked its logits
            unscored.append({"name": name, "format": "gguf", **footprint(art.path)})
            unscored[-1]["step"] = steps[name]
            continue
        point = {"name": name, "format": art.format, **score(art.path)}
        if cfg.profile:
            point.update(profile(art.path, batches, cfg.latency_repeats))
        if name in steps:
            point["step"] = steps[name]
        point["path"] = f"compress/{name}" if name != "source" else str(cfg.model)
        points.append(point)
    _relative_to_source(points)
    front = pareto_front(points)
    for p in points:
        p["pareto"] = p["name"] in front
    write_json_atomic(
        out / "pareto.json",
        {"test_examples": n_scored, "artefacts": points, "unscored": unscored},
    )
    plot_tradeoff(points, out / "tradeoff.png", f"{ctx.recipe.name}: compress")
    metrics = {p["name"]: _headline(p) for p in points}
    for p in points:
        ctx.metrics.log_dict(f"compress/{p['name']}", _headline(p))
    artifacts = {"pareto": "pareto.json", "tradeoff_plot": "tradeoff.png"}
    artifacts.update({name: name for name in steps})
    return StageResult(metrics={**metrics, "pareto": front}, artifacts=artifacts)


def _run_step(
    ctx: StageContext,
    index: int,
    step: Any,
    given: Compressed,
    out: Path,
    train_data: Any,
    fcfg: Any,
) -> tuple[Compressed, dict[str, Any]]:
    """Run one step into ``out/<name>``; returns its artefact and what it did."""
    from lmforge.compress.methods import StepRun, load_methods

    dest = out / step.name
    dest.mkdir(parents=True)
    run = StepRun(
        step=step,
        index=index,
        source=given,
        out=dest,
        location=f"compress/{step.name}",
        train_data=train_data,
        finetune=fcfg,
        seed=ctx.recipe.seed,
    )
    logger.info("compress: step %d %s (%s) on %s", index, step.name, step.method, given.path.name)
    art, facts = load_methods().get(step.method).run(run)
    return art, {"method": step.method, "input": given.path.name, **facts}


def _gguf_only(cfg: CompressConfig) -> bool:
    return all(s.method == "export" and s.format == "gguf" for s in cfg.steps)


def check_causal_lm(cfg: CompressConfig, source: Compressed) -> None:
    """A task-less source is distilled on the corpus only if it is a causal LM.

    Raises:
        LmforgeError: naming compress.model, before any work.
    """
    from lmforge.compress.lm import is_causal_lm

    if not is_causal_lm(source):
        objective = source.manifest.objective if source.manifest else None
        raise LmforgeError(
            f"compress.model: {cfg.model!r} is a pretrained model with objective {objective!r} "
            "and no task; only a causal LM (pretrain.objective: clm) is distilled on the run's "
            "corpus. Add a finetune section and compress its model, or export GGUF only"
        )


def _export_only(
    ctx: StageContext, cfg: CompressConfig, source: Compressed, out: Path
) -> StageResult:
    """A pretrained causal LM (no task to score): its GGUF exports and their footprints."""
    from lmforge.compress.score import footprint
    from lmforge.core.atomic import write_json_atomic

    made, points = {"source": source}, [{"name": "source", **footprint(source.path)}]
    last = source
    for i, step in enumerate(cfg.steps):
        given = last if step.input == "previous" else made[step.input]
        last, facts = _run_step(ctx, i, step, given, out, None, None)
        made[step.name] = last
        points.append(
            {"name": step.name, "format": last.format, **footprint(last.path), "step": facts}
        )
    pareto = {"test_examples": 0, "artefacts": [], "unscored": points}
    write_json_atomic(out / "pareto.json", pareto)
    metrics = {p["name"]: {k: p[k] for k in ("params", "size_mb")} for p in points}
    artifacts = {"pareto": "pareto.json", **{name: name for name in made if name != "source"}}
    return StageResult(metrics=metrics, artifacts=artifacts)


def _relative_to_source(points: list[dict[str, Any]]) -> None:
    """Speed-up and quality change of each artefact against the source (the first point)."""
    ref = points[0]
    for p in points:
        p["quality_delta"] = p["quality"] - ref["quality"]
        p["param_ratio"] = p["params"] / ref["params"]
        p["size_ratio"] = p["size_mb"] / ref["size_mb"]
        for key in list(ref):
            if key.startswith("latency_ms_p50_b") and key in p:
                p[f"speedup_b{key.rsplit('_b', 1)[1]}"] = ref[key] / p[key]


def _headline(point: dict[str, Any]) -> dict[str, float]:
    keys = ("quality", "params", "size_mb", "latency_ms_p50_b1", "latency_ms_p50_b32")
    keys += ("speedup_b1", "speedup_b32", "peak_rss_mb")
    return {k: point[k] for k in keys if k in point}


def _inputs(recipe: Any) -> Any:
    from lmforge.models import model_identity

    return {"model": model_identity(recipe.compress.model)}


def _check(recipe: Any) -> None:
    ref = recipe.compress.model
    if ref in ("pretrain", "finetune") and getattr(recipe, ref) is None:
        raise ValueError(f"compress.model: {ref!r} names a stage this recipe does not run")
    distills = [i for i, s in enumerate(recipe.compress.steps) if s.method == "distill"]
    if ref == "pretrain" and distills and recipe.pretrain.objective != "clm":
        raise ValueError(
            f"compress.model: distilling the pretrain stage's model needs a causal LM "
            f"(pretrain.objective: clm), not {recipe.pretrain.objective!r}; compress a fine-tuned "
            "model instead (compress.model: finetune)"
        )
    if recipe.finetune is None:
        _check_pretrained_lm(recipe, distills)
        return
    if ref == "finetune":
        from lmforge.finetune.stage import check_saved_model

        check_saved_model(recipe, "compress.model")
    from lmforge.compress.distill import TASKS as DISTILL_TASKS

    for i in distills:  # the pretrain stage's LM distils on the corpus, whatever the task
        if ref != "pretrain" and recipe.finetune.task not in DISTILL_TASKS:
            raise ValueError(
                f"compress.steps.{i} (distill).method: distillation supports the "
                f"{', '.join(DISTILL_TASKS)} tasks, not {recipe.finetune.task!r}"
            )


def _check_pretrained_lm(recipe: Any, distills: list[int]) -> None:
    """No finetune section: a pretrained causal LM, distilled on the run's corpus and/or
    exported to GGUF (no task to prune, quantize or export to ONNX for)."""
    if recipe.compress.model == "finetune":
        raise ValueError(
            "compress.model: there is no finetune section; name 'pretrain' or a model directory"
        )
    for i, step in enumerate(recipe.compress.steps):
        if step.method != "distill" and not (step.method == "export" and step.format == "gguf"):
            raise ValueError(
                f"compress.steps.{i} ({step.method}).method: without a finetune section the "
                f"model is a pretrained LM, which compress distils or exports to GGUF only; add "
                "a finetune section (its task, data and test split) to compress a task model"
            )
    if distills and recipe.data is None:
        raise ValueError(
            f"compress.steps.{distills[0]} (distill).method: a pretrained LM is distilled on the "
            "run's corpus; add a data section"
        )


SPEC = StageSpec(
    name="compress",
    config=CompressConfig,
    description="Distill, prune, quantize and export the fine-tuned model; score every artefact.",
    run=run_compress_stage,
    inputs=_inputs,
    needs=("data", "pretrain", "finetune"),
    check=_check,
)
