"""Which artefact ``lmforge serve`` serves, and loading it through ``load_artifact``.

Given a run directory the server serves the best model the run produced, in this order:
``finetune/merged`` (the adapter folded into plain weights: one model, no peft indirection per
call), ``finetune/model`` (a whole model, or an adapter on ``finetune/base``), then
``pretrain/model`` (a causal LM from a ``clm`` pre-training, served for generation). When the
run's compress stage made a smaller or faster artefact of that model that loses no quality
(``compressed_choice``), that artefact is served instead, unless ``uncompressed`` is asked
for. It says which on start-up, and ``/health`` and ``/v1/models`` name it. A model directory is served as it is - a compress step's artefact too
(ONNX Runtime for ``model.onnx``, dynamic int8 for ``model_int8.pt``, as its manifest's
``settings.format`` says); one saved outside lmforge (no ``lmforge.json``) is served for the
task its ``config.json`` architecture names, or ``--task``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError

RUN_CANDIDATES = ("finetune/merged", "finetune/model", "pretrain/model")
# config.json architecture suffix -> the task a model saved outside lmforge is served for
ARCHITECTURE_TASKS = (
    ("ForSequenceClassification", "classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "extractive-qa"),
    ("ForImageClassification", "image-classification"),
    ("ForConditionalGeneration", "translation"),
    ("ForCausalLM", "instruction"),
)
GENERATIVE = ("instruction",)
# compress formats the server runs (GGUF is llama.cpp's), and the quality an artefact may lose
# against its source (main metric, absolute) and still be served in its place
SERVED_FORMATS = ("transformers", "onnx", "torch-int8", "weight-only")
QUALITY_TOLERANCE = 0.005  # tasks whose model continues text (the OpenAI routes)


def is_model_dir(path: Path) -> bool:
    return any((path / f).is_file() for f in ("config.json", "adapter_config.json"))


def pick_artifact(path: str | Path, *, uncompressed: bool = False) -> tuple[Path, str]:
    """The model directory to serve for ``path`` and a sentence saying why it was chosen.

    Args:
        uncompressed: serve the run's fine-tuned (or pretrained) model even when its compress
            stage made an artefact that would be served instead (``compressed_choice``).

    Raises:
        LmforgeError: ``path`` is neither a model directory nor a run with a saved model.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise LmforgeError(f"{path} is not a directory: pass a run directory or a model directory")
    if is_model_dir(path):
        return path, f"serving the model directory {path}"
    for rel in RUN_CANDIDATES:
        if is_model_dir(path / rel):
            skipped = [r for r in RUN_CANDIDATES[: RUN_CANDIDATES.index(rel)]]
            why = f"serving {rel} of the run {path}"
            if skipped:
                why += f" (no {' or '.join(skipped)})"
            if uncompressed:
                return path / rel, why + " (--uncompressed)"
            compressed, reason = compressed_choice(path, rel)
            if compressed is not None:
                return path / compressed, f"serving {compressed} of the run {path} ({reason})"
            return path / rel, why + (f"; {reason}" if reason else "")
    raise LmforgeError(
        f"{path} holds no saved model: a run directory needs one of "
        f"{', '.join(RUN_CANDIDATES)} (run its finetune stage first), or pass a model directory"
    )


def _quality_kept(point: dict) -> float:
    """The artefact's quality change against its source, positive when better (a fall in
    perplexity, whose lower is better); -inf when pareto.json records none."""
    from lmforge.compress.score import LOWER_IS_BETTER

    delta = point.get("quality_delta")
    if not isinstance(delta, int | float):
        return float("-inf")
    return -delta if point.get("quality_metric") in LOWER_IS_BETTER else delta


def compressed_choice(root: Path, source_rel: str) -> tuple[str | None, str]:
    """The compress artefact to serve in place of ``source_rel`` (a path in the run), and why.

    Read from ``compress/pareto.json``: among the artefacts the stage scored, of a format the
    server runs, made from the model ``source_rel`` names, on the Pareto front and within
    ``QUALITY_TOLERANCE`` of its source's quality, the one with the lowest batch-1 latency
    (p50; the smallest on disk when not profiled). None when the run has no done compress stage
    (stale after ``lmforge improve``: it compressed the old model) or no artefact qualifies;
    the sentence then says why ("" without a compress stage).
    """
    pareto = root / "compress" / "pareto.json"
    if not pareto.is_file():
        return None, ""
    summary = root / "summary.json"
    if summary.is_file():
        try:
            entry = json.loads(summary.read_text(encoding="utf-8"))["stages"].get("compress", {})
        except (OSError, ValueError, KeyError, AttributeError):
            entry = {}
        if entry.get("status") != "done":
            return None, f"compress is {entry.get('status', 'not recorded')}, not served"
    try:
        points = json.loads(pareto.read_text(encoding="utf-8")).get("artefacts") or []
    except (OSError, ValueError, AttributeError):
        return None, "compress/pareto.json is unreadable, compressed artefacts not served"
    source = next((p for p in points if p.get("name") == "source"), None)
    stage = source_rel.split("/")[0]
    if source is None or str(source.get("path")) not in (stage, source_rel):
        return None, f"compress did not compress {source_rel}, its artefacts are not served"
    fit = [
        p
        for p in points
        if p.get("name") != "source"
        and p.get("format") in SERVED_FORMATS
        and p.get("pareto")
        and _quality_kept(p) >= -QUALITY_TOLERANCE
        and is_model_dir(root / str(p.get("path")))
    ]
    if not fit:
        return None, "no compress artefact keeps its quality on the Pareto front"

    def cost(p: dict) -> tuple[float, float]:
        return (p.get("latency_ms_p50_b1", float("inf")), p.get("size_mb", float("inf")))

    best = min(fit, key=cost)
    facts = [f"{best['format']}", f"quality {best['quality_delta']:+.4f} vs {source_rel}"]
    if "speedup_b1" in best:
        facts.append(f"{best['speedup_b1']:.2f}x faster at batch 1")
    if "size_ratio" in best:
        facts.append(f"{best['size_ratio']:.2f}x the size")
    return str(best["path"]), (
        f"compressed from {source_rel}: {', '.join(facts)}; --uncompressed serves {source_rel}"
    )


def guess_task(directory: Path) -> str | None:
    """The task a model saved outside lmforge is for, from its config.json architecture."""
    config = directory / "config.json"
    if not config.is_file():
        return None
    try:
        names = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return None
    for name in names:
        for suffix, task in ARCHITECTURE_TASKS:
            if str(name).endswith(suffix):
                return task
    return None


def default_info(task: str, model_dir: Path) -> Any:
    """The label space of a model with no manifest, from its config (``id2label``)."""
    from lmforge.tasks.classification import LabelInfo
    from lmforge.tasks.instruction import InstructionInfo

    if task == "instruction":
        return InstructionInfo("en")
    if task in ("classification", "image-classification"):
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        labels = config.get("id2label") or {}
        ordered = [labels[k] for k in sorted(labels, key=lambda k: int(k))]
        if task == "image-classification":
            from lmforge.tasks.image_classification import ImageInfo

            return ImageInfo(ordered)
        return LabelInfo(ordered, config.get("problem_type") == "multi_label_classification")
    return None


@dataclass
class ServedModel:
    """A loaded model and everything a route needs to run it."""

    name: str  # the model id clients send (``model`` field) and /v1/models lists
    path: Path
    task: str
    kind: str  # manifest kind: merged, full, adapter, pretrained
    info: Any  # the task's label space
    model: Any  # eval mode
    processor: Any  # tokenizer or image processor
    cfg: Any  # FinetuneConfig: max_length, batch_size, generation limits, method
    why: str  # the start-up sentence: what is served and why
    artifact: str = ""  # what /health names: the path inside the run ("compress/int8") or dir
    format: str = "transformers"  # the manifest's settings.format: onnx, torch-int8, ...

    @property
    def generative(self) -> bool:
        return self.task in GENERATIVE

    @property
    def labels(self) -> list[str]:
        return list(getattr(self.info, "labels", []) or [])


def load_served(
    path: str | Path,
    *,
    task: str | None = None,
    name: str | None = None,
    trust_remote_code: bool = False,
    uncompressed: bool = False,
) -> ServedModel:
    """Pick (``pick_artifact``) and load the model to serve, in eval mode on the CPU/GPU found.

    A compress step's artefact (ONNX, torch int8, ...) loads through compress's own
    ``load_compressed``; every other model through ``load_artifact``.

    Raises:
        LmforgeError: no model, a task that disagrees with the manifest, a model of no task.
    """
    from lmforge.evaluate.stage import scoring_config
    from lmforge.tasks.artifact import inspect_artifact, load_artifact

    directory, why = pick_artifact(path, uncompressed=uncompressed)
    given = Path(path).expanduser()
    artifact = directory.relative_to(given).as_posix() if directory != given else directory.name
    files = inspect_artifact(directory, task=task)
    chosen = task or (files.task.name if files.task is not None else None)
    if chosen is None:
        if files.manifest is not None and files.manifest.kind == "pretrained":
            chosen = "instruction" if files.manifest.objective == "clm" else None
        else:
            chosen = guess_task(directory)
    if chosen is None:
        raise LmforgeError(
            f"{directory} names no task (no lmforge.json task, no architecture lmforge serves); "
            "pass --task classification|token-classification|extractive-qa|translation|"
            "image-classification|instruction"
        )
    info = files.info if files.info is not None else default_info(chosen, directory)
    fmt = files.manifest.settings.get("format") if files.manifest is not None else None
    if fmt == "gguf":
        raise LmforgeError(
            f"{directory} is a GGUF file for llama.cpp-style runtimes, which lmforge serve does "
            "not run; serve the transformers directory it was converted from"
        )
    if fmt in ("onnx", "torch-int8", "weight-only"):  # a compress step's artefact: its loader
        from lmforge.compress.artifact import load_compressed

        model, processor, _, info = load_compressed(directory)
        cfg = scoring_config(files, trust_remote_code=trust_remote_code)
        return ServedModel(
            name=name or _name(Path(path), directory),
            path=directory,
            task=chosen,
            kind=f"{files.kind}, {fmt}",
            info=info,
            model=model,
            processor=processor,
            cfg=cfg,
            why=f"{why}: {chosen} ({fmt})",
            artifact=artifact,
            format=fmt,
        )
    art = load_artifact(directory, task=chosen, info=info, trust_remote_code=trust_remote_code)
    cfg = scoring_config(art, trust_remote_code=trust_remote_code)
    return ServedModel(
        name=name or _name(Path(path), directory),
        path=directory,
        task=chosen,
        kind=art.kind,
        info=art.info,
        model=art.model,
        processor=art.processor,
        cfg=cfg,
        why=f"{why}: {chosen} ({art.kind})",
        artifact=artifact,
        format=fmt or "transformers",
    )


def _name(given: Path, directory: Path) -> str:
    """The model id: the run's name for a run directory, else the model directory's."""
    return given.expanduser().resolve().name if directory != given else directory.name
