"""Run a recipe's stages in order inside one run directory.

Each stage writes into a temporary directory that is renamed into place only when it
completes, with the hash of everything it was made from (its config, the seed, upstream
stage hashes, input file fingerprints, the lmforge version). A stage whose hash matches the
completed one on disk is skipped unless ``force``.
"""

from __future__ import annotations

import difflib
import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lmforge import __version__
from lmforge.core.atomic import atomic_dir, replace_dir, write_json_atomic
from lmforge.core.distributed import barrier, broadcast_object, init_distributed
from lmforge.core.errors import LmforgeError, RecipeError
from lmforge.core.hashing import hash_json
from lmforge.core.log import logger
from lmforge.core.rundir import RunDir, write_stage_state
from lmforge.core.seed import seed_everything
from lmforge.core.stage import StageContext, StageResult
from lmforge.recipe import Recipe, resolved_yaml
from lmforge.stages import AVAILABLE_STAGES, STAGE_SPECS, STAGES

RUNS_DIR = Path("runs")


@dataclass
class RunOutcome:
    root: Path
    summary: dict[str, Any]
    ran: list[str]
    cached: list[str]


def parse_only(only: str | list[str] | None, recipe: Recipe) -> list[str] | None:
    """Validate ``--only data,tokenizer`` against the stages the recipe configures."""
    if only is None:
        return None
    names = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    if not names:
        raise RecipeError("--only needs at least one stage name")
    for name in names:
        if name not in STAGES:
            close = difflib.get_close_matches(name, STAGES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RecipeError(f"--only: unknown stage '{name}'{hint} Stages: {', '.join(STAGES)}")
        if name not in AVAILABLE_STAGES:
            raise RecipeError(
                f"--only: the '{name}' stage is not available in lmforge {__version__}"
            )
        if getattr(recipe, name) is None:
            raise RecipeError(f"--only: recipe '{recipe.name}' has no '{name}' section")
    return names


def latest_run(name: str, runs_dir: Path = RUNS_DIR) -> Path | None:
    candidates = sorted(p for p in runs_dir.glob(f"{name}-*") if (p / "recipe.yaml").exists())
    return candidates[-1] if candidates else None


def resolve_run_dir(recipe: Recipe, out: Path | None, resume: bool) -> Path:
    if out is not None:
        return out
    if resume:
        found = latest_run(recipe.name)
        if found is None:
            raise RecipeError(
                f"--resume: no earlier run of '{recipe.name}' in {RUNS_DIR}/; give --out DIR"
            )
        return found
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = RUNS_DIR / f"{recipe.name}-{stamp}"
    n = 1
    while root.exists():
        n += 1
        root = RUNS_DIR / f"{recipe.name}-{stamp}-{n}"
    return root


def stage_hash(recipe: Recipe, stage: str, upstream: dict[str, str]) -> str:
    spec = STAGE_SPECS[stage]
    return hash_json(
        {
            "stage": stage,
            "lmforge": __version__,
            "seed": recipe.seed,
            "config": getattr(recipe, stage).model_dump(mode="json"),
            "upstream": {s: upstream.get(s) for s in spec.needs if getattr(recipe, s) is not None},
            "inputs": spec.inputs(recipe),
        }
    )


def _config_diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Key paths whose values differ between two JSON-like configs: ``pretrain.lr: 0.001 -> 0.002``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _config_diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def prepare_partial(run: RunDir, recipe: Recipe, stage: str, h: str, resume: bool) -> Path:
    """The stable work dir of a resumable stage: kept for ``--resume``, else started afresh."""
    work = run.root / f".{stage}.partial"
    marker = work / "_inputs.json"
    config = {stage: getattr(recipe, stage).model_dump(mode="json"), "seed": recipe.seed}
    if work.exists() and resume and marker.exists():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved.get("hash") == h:
            logger.info("%s: resuming the interrupted stage in %s", stage, work)
            return work
        changes = _config_diff(saved.get("config"), config) or ["an upstream stage's output"]
        raise RecipeError(
            f"cannot --resume stage '{stage}': what it is made from changed since the interrupted "
            f"run ({'; '.join(changes)}). Restore the recipe, or run without --resume to start "
            "the stage over."
        )
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_json_atomic(marker, {"hash": h, "config": config})
    return work


def _run_stage(ctx: StageContext, run: RunDir, stage: str, h: str) -> StageResult:
    spec = STAGE_SPECS[stage]
    final = run.stage_dir(stage)
    if not spec.resumable:  # rank 0 only; a throwaway temp dir renamed into place
        with atomic_dir(final) as tmp:
            result = spec.run(ctx, tmp)
            write_stage_state(tmp, h, result)
        return result
    if ctx.dist.is_main:
        prepare_partial(run, ctx.recipe, stage, h, ctx.resume)
    barrier()
    work = run.root / f".{stage}.partial"
    result = spec.run(ctx, work)
    if ctx.dist.is_main:
        write_stage_state(work, h, result)
        replace_dir(work, final)
    barrier()
    return result


def run_recipe(
    recipe: Recipe,
    out: Path | None = None,
    only: str | list[str] | None = None,
    resume: bool = False,
    force: bool = False,
) -> RunOutcome:
    """Execute the recipe; raises the failing stage's error after recording it in summary.json.

    Under torchrun, every process calls this: rank 0 owns the run directory and runs the
    single-process stages while the others wait; resumable stages run on all ranks.
    """
    selected = parse_only(only, recipe) or recipe.stages()
    if not selected:
        raise RecipeError(f"recipe '{recipe.name}' configures no stage; add e.g. a data section")
    info = init_distributed()
    root = Path(broadcast_object(str(resolve_run_dir(recipe, out, resume))))
    run = RunDir(root, recipe.name, writer=info.is_main)
    if info.is_main:
        run.write_recipe(resolved_yaml(recipe))
        logger.info("run directory: %s", run.root)
    barrier()

    hashes: dict[str, str] = {}
    ran: list[str] = []
    cached: list[str] = []
    for stage in recipe.stages():
        h = stage_hash(recipe, stage, hashes)
        hashes[stage] = h
        state = run.completed_state(stage)
        if stage not in selected:
            # downstream stages read what is on disk, so they depend on its hash
            hashes[stage] = state["hash"] if state and "hash" in state else h
            if info.is_main and stage not in run.load_summary()["stages"]:
                run.record_stage(stage, "skipped", 0.0)
            continue
        if state is not None and state.get("hash") == h and not force:
            logger.info("%s: unchanged since the last run, skipped (use --force to redo)", stage)
            if info.is_main:
                result = StageResult(state.get("metrics", {}), state.get("artifacts", {}))
                previous = run.load_summary()["stages"].get(stage, {})
                run.record_stage(stage, "done", previous.get("seconds", 0.0), result, cached=True)
            cached.append(stage)
            continue
        seed_everything(recipe.seed)
        logger.info("%s: running", stage)
        ctx = StageContext(recipe, run.root, run.metrics, info, resume, h)
        t0 = time.perf_counter()
        error: str | None = None
        try:
            if info.is_main or STAGE_SPECS[stage].resumable:
                result = _run_stage(ctx, run, stage, h)
        except BaseException as e:
            error = str(e) or type(e).__name__
            if info.is_main:
                run.record_stage(stage, "failed", time.perf_counter() - t0, error=error)
            raise
        finally:
            if not STAGE_SPECS[stage].resumable:
                # the other ranks wait for rank 0 and learn whether it succeeded
                error = broadcast_object(error)
        if error is not None:
            raise LmforgeError(f"stage '{stage}' failed on rank 0: {error}")
        seconds = time.perf_counter() - t0
        if info.is_main:
            run.record_stage(stage, "done", seconds, result)
        logger.info("%s: done in %.1f s", stage, seconds)
        ran.append(stage)
    return RunOutcome(run.root, run.load_summary(), ran, cached)
