"""The table of stages a run can execute: what each needs, what it hashes, how it runs.

Adding a stage is adding one ``StageSpec`` here and a section to ``lmforge.recipe.Recipe``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.core.distributed import DistInfo
from lmforge.core.hashing import fingerprint_path
from lmforge.core.metrics import MetricsLogger
from lmforge.core.rundir import StageResult
from lmforge.recipe import Recipe


@dataclass(frozen=True)
class StageContext:
    """What a stage may use: the validated recipe, its run directory and the metrics log."""

    recipe: Recipe
    root: Path
    metrics: MetricsLogger  # disabled on ranks other than 0
    dist: DistInfo = DistInfo()
    resume: bool = False  # continue from the stage's own checkpoints, if it keeps any
    input_hash: str = ""  # identity of everything the stage is made from

    def stage_dir(self, stage: str) -> Path | None:
        """The completed output directory of an earlier stage, or None if the recipe lacks it."""
        return self.root / stage if getattr(self.recipe, stage, None) is not None else None


@dataclass(frozen=True)
class StageSpec:
    name: str
    needs: tuple[str, ...]  # upstream stages whose outputs this one reads
    run: Callable[[StageContext, Path], StageResult]  # (context, temporary output dir)
    inputs: Callable[[Recipe], Any]  # identity of external inputs, for the content hash
    # resumable stages work in a stable ``.<stage>.partial`` dir kept after a crash, and
    # run on every torchrun process; the others run on rank 0 in a throwaway temp dir
    resumable: bool = False


def _run_data(ctx: StageContext, out: Path) -> StageResult:
    from lmforge.data.stage import run_data_stage

    assert ctx.recipe.data is not None
    return run_data_stage(ctx.recipe.data, out, ctx.recipe.seed, ctx.metrics)


def _data_inputs(recipe: Recipe) -> Any:
    assert recipe.data is not None
    return [fingerprint_path(s.path) if s.path else s.builtin for s in recipe.data.sources]


def _run_tokenizer(ctx: StageContext, out: Path) -> StageResult:
    from lmforge.tokenizer.stage import run_tokenizer_stage

    assert ctx.recipe.tokenizer is not None
    return run_tokenizer_stage(ctx.recipe.tokenizer, ctx.stage_dir("data"), out, ctx.metrics)


def _tokenizer_inputs(recipe: Recipe) -> Any:
    assert recipe.tokenizer is not None
    return [fingerprint_path(p) for p in recipe.tokenizer.files or []]


def _run_pretrain(ctx: StageContext, out: Path) -> StageResult:
    from lmforge.pretrain.stage import run_pretrain_stage

    return run_pretrain_stage(ctx, out)


def _model_identity(path: str | None) -> Any:
    """A model directory's fingerprint; a built-in name, 'pretrain' or None as it is."""
    return fingerprint_path(path) if path is not None and Path(path).is_dir() else path


def _pretrain_inputs(recipe: Recipe) -> Any:
    assert recipe.pretrain is not None
    return _model_identity(recipe.pretrain.model.path)


def _run_finetune(ctx: StageContext, out: Path) -> StageResult:
    from lmforge.finetune.stage import run_finetune_stage

    return run_finetune_stage(ctx, out)


def _finetune_inputs(recipe: Recipe) -> Any:
    assert recipe.finetune is not None
    d, path = recipe.finetune.data, recipe.finetune.model.path
    files = [fingerprint_path(p) for p in (d.train, d.val, d.test) if p is not None]
    return {"files": files, "model": _model_identity(path)}


def _run_evaluate(ctx: StageContext, out: Path) -> StageResult:
    from lmforge.evaluate.stage import run_evaluate_stage

    return run_evaluate_stage(ctx, out)


def _evaluate_inputs(recipe: Recipe) -> Any:
    assert recipe.evaluate is not None
    test = recipe.evaluate.test
    return {
        "test": fingerprint_path(test) if test else None,
        "model": _model_identity(recipe.evaluate.model),
    }


STAGE_SPECS: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec("data", (), _run_data, _data_inputs),
        StageSpec("tokenizer", ("data",), _run_tokenizer, _tokenizer_inputs),
        StageSpec(
            "pretrain", ("data", "tokenizer"), _run_pretrain, _pretrain_inputs, resumable=True
        ),
        StageSpec("finetune", ("data", "tokenizer", "pretrain"), _run_finetune, _finetune_inputs),
        StageSpec("evaluate", ("data", "finetune"), _run_evaluate, _evaluate_inputs),
    )
}
