"""Run a recipe's stages in order inside one run directory.

Each stage writes into a temporary directory that is renamed into place only when it
completes, with the hash of everything it was made from (its config, the seed, upstream
stage hashes, input file fingerprints, the lmforge version). A stage whose hash matches the
completed one on disk is skipped unless ``force``.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lmforge import __version__
from lmforge.core.atomic import atomic_dir
from lmforge.core.errors import RecipeError
from lmforge.core.hashing import hash_json
from lmforge.core.log import logger
from lmforge.core.rundir import RunDir, StageResult, write_stage_state
from lmforge.core.seed import seed_everything
from lmforge.recipe import AVAILABLE_STAGES, STAGES, Recipe, resolved_yaml
from lmforge.stages import STAGE_SPECS, StageContext

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


def run_recipe(
    recipe: Recipe,
    out: Path | None = None,
    only: str | list[str] | None = None,
    resume: bool = False,
    force: bool = False,
) -> RunOutcome:
    """Execute the recipe; raises the failing stage's error after recording it in summary.json."""
    selected = parse_only(only, recipe) or recipe.stages()
    if not selected:
        raise RecipeError(f"recipe '{recipe.name}' configures no stage; add e.g. a data section")
    root = resolve_run_dir(recipe, out, resume)
    run = RunDir(root, recipe.name)
    run.write_recipe(resolved_yaml(recipe))
    ctx = StageContext(recipe, run.root, run.metrics)
    logger.info("run directory: %s", run.root)

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
            if stage not in run.load_summary()["stages"]:
                run.record_stage(stage, "skipped", 0.0)
            continue
        if state is not None and state.get("hash") == h and not force:
            logger.info("%s: unchanged since the last run, skipped (use --force to redo)", stage)
            result = StageResult(state.get("metrics", {}), state.get("artifacts", {}))
            previous = run.load_summary()["stages"].get(stage, {})
            run.record_stage(stage, "done", previous.get("seconds", 0.0), result, cached=True)
            cached.append(stage)
            continue
        seed_everything(recipe.seed)
        logger.info("%s: running", stage)
        t0 = time.perf_counter()
        try:
            with atomic_dir(run.stage_dir(stage)) as tmp:
                result = STAGE_SPECS[stage].run(ctx, tmp)
                write_stage_state(tmp, h, result)
        except BaseException as e:
            error = str(e) or type(e).__name__
            run.record_stage(stage, "failed", time.perf_counter() - t0, error=error)
            raise
        seconds = time.perf_counter() - t0
        run.record_stage(stage, "done", seconds, result)
        logger.info("%s: done in %.1f s", stage, seconds)
        ran.append(stage)
    return RunOutcome(run.root, run.load_summary(), ran, cached)
