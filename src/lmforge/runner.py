"""Run a recipe's stages in order inside one run directory.

Each stage writes into a temporary directory that is renamed into place only when it
completes, with the hash of everything it was made from (its config, the seed, upstream
stage hashes, input file fingerprints, the lmforge version). A stage whose hash matches the
completed one on disk is skipped unless ``force``. One process writes a run directory at a
time (a lock); stages downstream of a rerun stage are marked stale until they rerun, and
recipe.yaml describes what the completed stages were made from. The stages in
``CACHED_STAGES`` are also kept in the user's stage cache (``core.cache``) and taken from it,
by the same hash, when another run directory needs them.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from lmforge import __version__
from lmforge.core.atomic import atomic_dir, replace_dir, write_json_atomic
from lmforge.core.cache import Hit, StageCache, disabled_by_env
from lmforge.core.distributed import DistInfo, barrier, broadcast_object, init_distributed
from lmforge.core.errors import (
    LmforgeError,
    RecipeError,
    Terminated,
    is_disk_full,
    no_space_message,
)
from lmforge.core.hashing import hash_json
from lmforge.core.log import logger
from lmforge.core.rundir import (
    RunDir,
    Status,
    cannot_write_message,
    latest_run,
    open_run_dir,
    write_stage_state,
)
from lmforge.core.seed import seed_everything
from lmforge.core.stage import StageContext, StageResult
from lmforge.recipe import Recipe, resolved_yaml
from lmforge.stages import AVAILABLE_STAGES, STAGE_SPECS, STAGES

RUNS_DIR = Path("runs")
# stages whose outputs other recipes share (one corpus, tokenizer and encoder serve several
# fine-tuning recipes); later stages are particular to one recipe and stay in its run
CACHED_STAGES: tuple[str, ...] = ("data", "tokenizer", "pretrain")


@dataclass
class RunOutcome:
    root: Path
    summary: dict[str, Any]
    ran: list[str]
    cached: list[str]  # unchanged in this run directory, skipped
    restored: list[str] = field(default_factory=list)  # taken from the stage cache


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


def resolve_run_dir(recipe: Recipe, out: Path | None, resume: bool) -> Path:
    """``--out``, else the newest run of this recipe for ``--resume``, else a new run folder."""
    if out is not None:
        return out
    if resume:
        found = latest_run(RUNS_DIR, recipe.name)
        if found is None:
            raise RecipeError(
                f"--resume: no earlier run of '{recipe.name}' in {RUNS_DIR}/; give --out DIR"
            )
        return found
    return new_run_dir(recipe.name)


def new_run_dir(name: str, runs_dir: Path = RUNS_DIR) -> Path:
    """Create ``runs/<name>-<timestamp>[-<n>]``; ``mkdir`` claims the name, so two runs
    started in the same second get two folders."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    n = 1
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        while True:
            root = runs_dir / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
            try:
                root.mkdir()
                return root
            except FileExistsError:
                n += 1
    except OSError as e:
        raise LmforgeError(cannot_write_message(str(runs_dir), e)) from None


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
    work = run.partial_dir(stage)
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


def _run_stage(
    ctx: StageContext, run: RunDir, stage: str, h: str, upstream: dict[str, str]
) -> StageResult:
    """Run one stage into a temporary (or, resumable, a kept partial) folder, then swap it in.

    Just before the swap, the stages it invalidates are marked stale in the summary, so a
    kill at any point never shows stale outputs as done.
    """
    spec = STAGE_SPECS[stage]
    final = run.stage_dir(stage)
    made_from = _made_from(ctx.recipe, stage)
    if not spec.resumable:  # rank 0 only; a throwaway temp dir renamed into place
        with atomic_dir(final) as tmp:
            result = spec.run(ctx, tmp)
            write_stage_state(tmp, h, result, upstream, made_from)
            run.refresh_stale(AVAILABLE_STAGES, pending={stage: h})
        return result
    if ctx.dist.is_main:
        prepare_partial(run, ctx.recipe, stage, h, ctx.resume)
    barrier()
    work = run.partial_dir(stage)
    result = spec.run(ctx, work)
    if ctx.dist.is_main:
        write_stage_state(work, h, result, upstream, made_from)
        run.refresh_stale(AVAILABLE_STAGES, pending={stage: h})
        replace_dir(work, final)
    barrier()
    return result


def _made_from(recipe: Recipe, stage: str) -> dict[str, Any]:
    """The recipe section and seed a stage's outputs are made from (for recipe.yaml)."""
    return {"config": getattr(recipe, stage).model_dump(mode="json"), "seed": recipe.seed}


def _open_cache(use_cache: bool) -> StageCache | None:
    """The user's stage cache, or None when ``--no-cache``/``LMFORGE_NO_CACHE`` turn it off
    or it cannot be set up (a run never fails for want of its cache)."""
    if not use_cache or disabled_by_env():
        return None
    try:
        return StageCache()
    except (OSError, RuntimeError) as e:  # RuntimeError: no home folder to put it in
        logger.warning("stage cache off for this run: %s", e)
        return None


class _Miss(Exception):
    """No usable cache entry: the temporary stage folder is discarded, the stage is built."""


def _restore_stage(
    cache: StageCache, run: RunDir, recipe: Recipe, stage: str, h: str, upstream: dict[str, str]
) -> Hit | None:
    """Take a stage's folder from the cache, swapped into the run as a built one would be.

    The entry's files are linked into a temporary folder and checked against its manifest
    there; a damaged entry is dropped (``StageCache.restore`` warns) and the stage is built.
    The build's metric events are appended to metrics.jsonl, so the report has its curves.
    """
    try:
        with atomic_dir(run.stage_dir(stage)) as tmp:
            hit = cache.restore(stage, h, tmp)
            if hit is None:
                raise _Miss
            result = StageResult(hit.result.get("metrics", {}), hit.result.get("artifacts", {}))
            write_stage_state(tmp, h, result, upstream, _made_from(recipe, stage))
            run.refresh_stale(AVAILABLE_STAGES, pending={stage: h})
    except _Miss:
        return None
    except OSError as e:
        logger.warning("%s: not taken from the stage cache (%s); building it", stage, e)
        return None
    if hit.events:
        with run.metrics.path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in hit.events)
    # a finished stage supersedes interrupted work on it, as when a build completes
    shutil.rmtree(run.partial_dir(stage), ignore_errors=True)
    return hit


def _events_since(path: Path, offset: int, stage: str) -> list[dict[str, Any]]:
    """The stage's metrics.jsonl events written after byte ``offset`` (what a cache keeps)."""
    with path.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode("utf-8", "replace").splitlines()
    events = []
    for line in lines:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("stage") == stage:
                events.append(event)
    return events


def _store_stage(
    cache: StageCache,
    run: RunDir,
    stage: str,
    h: str,
    result: StageResult,
    events: list[dict[str, Any]],
    seconds: float,
) -> None:
    """Keep a built stage in the cache; a failure to do so is a warning, never a failed run."""
    kept = {"metrics": result.metrics, "artifacts": result.artifacts}
    try:
        path = cache.store(
            stage, h, run.stage_dir(stage), kept, events, seconds, str(run.root.resolve())
        )
    except OSError as e:
        logger.warning("%s: not kept in the stage cache (%s); the run is unaffected", stage, e)
        return
    if path is not None:
        logger.info("%s: kept in the stage cache (%s)", stage, path)


def write_run_recipe(run: RunDir, recipe: Recipe) -> None:
    """recipe.yaml: each stage section as the stage's outputs on disk were made.

    A stage's section changes only when that stage completes; stages without outputs get the
    current recipe's section. Name, seed and versions are the current run's; a stage made with
    another seed is noted in a comment.
    """
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, yaml.YAMLError):
        loaded = yaml.safe_load((run.root / "recipe.yaml").read_text(encoding="utf-8"))
        previous = loaded if isinstance(loaded, dict) else {}
    sections: dict[str, Any] = {}
    notes: list[str] = []
    for stage in AVAILABLE_STAGES:
        state = run.completed_state(stage)
        if state is None:
            continue
        made = state.get("made_from")
        if isinstance(made, dict) and "config" in made:
            sections[stage] = made["config"]
            if made.get("seed", recipe.seed) != recipe.seed:
                notes.append(f"{stage}/ was made with seed {made['seed']} ({stage}/_stage.json)")
        elif previous.get(stage) is not None:  # made by an lmforge that did not record it
            sections[stage] = previous[stage]
    run.write_recipe(resolved_yaml(recipe, sections, notes))


def _plan_hashes(run: RunDir, recipe: Recipe, selected: list[str]) -> dict[str, str]:
    """Each stage's input hash; a stage not selected counts as what is on disk."""
    hashes: dict[str, str] = {}
    for stage in recipe.stages():
        hashes[stage] = stage_hash(recipe, stage, hashes)
        state = run.completed_state(stage)
        if stage not in selected and state is not None and "hash" in state:
            hashes[stage] = state["hash"]  # downstream stages read what is on disk
    return hashes


def _refuse_stale_inputs(
    run: RunDir, recipe: Recipe, selected: list[str], hashes: dict[str, str]
) -> None:
    """``--only`` must not run a stage on the outputs of a stage that is (or would be) stale."""
    will_be_stale = run.stale_stages(AVAILABLE_STAGES, {s: hashes[s] for s in selected})
    for stage in selected:
        for up in STAGE_SPECS[stage].needs:
            if up in will_be_stale and up not in selected and getattr(recipe, up) is not None:
                fix = [s for s in recipe.stages() if s in selected or s in will_be_stale]
                raise RecipeError(
                    f"--only: stage '{stage}' reads the outputs of '{up}', which are stale "
                    f"({will_be_stale[up]}). Rerun it too: --only {','.join(fix)} "
                    "(or run without --only)."
                )


def _refuse_links(run: RunDir, stage: str) -> None:
    for path in (run.stage_dir(stage), run.partial_dir(stage)):
        if path.is_symlink():
            raise LmforgeError(
                f"{path} is a symbolic link; lmforge replaces a stage's folder as a whole when "
                "it reruns and does not write through links. Replace the link with a real "
                "folder, or link the whole run directory (--out) instead."
            )


def _failure(e: BaseException, stage: str, root: Path) -> tuple[Status, str, LmforgeError | None]:
    """How a stage's exception is recorded: status, message, and the error to raise instead."""
    if isinstance(e, KeyboardInterrupt | Terminated):
        how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
        keep = STAGE_SPECS[stage].resumable
        logger.warning(
            "%s: %s%s",
            stage,
            how,
            "; its work so far is kept: continue with --resume" if keep else "",
        )
        return "interrupted", how, None
    if not isinstance(e, LmforgeError) and is_disk_full(e, root):
        message = no_space_message(e, root, f"running stage '{stage}'")
        return "failed", message, LmforgeError(message)
    return "failed", str(e) or type(e).__name__, None


def run_recipe(
    recipe: Recipe,
    out: Path | None = None,
    only: str | list[str] | None = None,
    resume: bool = False,
    force: bool = False,
    use_cache: bool = True,
) -> RunOutcome:
    """Execute the recipe; raises the failing stage's error after recording it in summary.json.

    Under torchrun, every process calls this: rank 0 owns (and locks) the run directory and
    runs the single-process stages while the others wait; resumable stages run on all ranks.
    ``use_cache=False`` (``--no-cache``) neither takes stages from the stage cache nor adds
    them; ``force`` builds every stage but still adds new entries.
    """
    selected = parse_only(only, recipe) or recipe.stages()
    if not selected:
        raise RecipeError(f"recipe '{recipe.name}' configures no stage; add e.g. a data section")
    info = init_distributed()
    with contextlib.ExitStack() as stack:
        run = _open(stack, recipe, out, resume, info)
        interrupted = False
        try:
            return _run_stages(run, recipe, selected, resume, force, info, use_cache)
        except OSError as e:  # outside a stage: summary.json, recipe.yaml
            if is_disk_full(e, run.root):
                raise LmforgeError(
                    no_space_message(e, run.root, f"writing the run directory {run.root}")
                ) from e
            raise
        except (KeyboardInterrupt, Terminated):
            interrupted = True  # stop now; `lmforge report RUN_DIR` draws the page later
            raise
        finally:
            if info.is_main and not interrupted:
                _write_report(run.root)


def _write_report(root: Path) -> None:
    """The run's report.html, after every run that was not interrupted (failed ones too)."""
    from lmforge.report import write_report

    path = write_report(root)  # never raises: a broken part becomes a note on the page
    logger.info("report: %s", path)


def _open(
    stack: contextlib.ExitStack, recipe: Recipe, out: Path | None, resume: bool, info: DistInfo
) -> RunDir:
    """Rank 0 opens (checks, locks) the run directory; every rank learns it or its error."""
    opened: RunDir | None = None
    error: LmforgeError | None = None
    if info.is_main:
        try:
            root = resolve_run_dir(recipe, out, resume)
            opened = stack.enter_context(open_run_dir(root, recipe.name))
        except LmforgeError as e:
            error = e
    shared = (str(opened.root) if opened else None, str(error) if error else None)
    root_text, message = broadcast_object(shared)
    if error is not None:
        raise error
    if message is not None:
        raise LmforgeError(message)
    return opened or RunDir(Path(root_text), recipe.name, writer=False)


def _run_stages(
    run: RunDir,
    recipe: Recipe,
    selected: list[str],
    resume: bool,
    force: bool,
    info: DistInfo,
    use_cache: bool = True,
) -> RunOutcome:
    if info.is_main:
        logger.info("run directory: %s", run.root)
        run.refresh_stale(AVAILABLE_STAGES)  # repairs what a kill -9 may have left unmarked
    hashes = _plan_hashes(run, recipe, selected)
    _refuse_stale_inputs(run, recipe, selected, hashes)
    cache = _open_cache(use_cache) if info.is_main else None
    caching = broadcast_object(cache is not None)  # every rank takes the same path below
    barrier()

    ran: list[str] = []
    cached: list[str] = []
    restored: list[str] = []
    for stage in recipe.stages():
        h = hashes[stage]
        state = run.completed_state(stage)
        if stage not in selected:
            if info.is_main and stage not in run.load_summary()["stages"]:
                run.record_stage(stage, "skipped", 0.0)
            continue
        if state is not None and state.get("hash") == h and not force:
            logger.info("%s: unchanged since the last run, skipped (use --force to redo)", stage)
            if info.is_main:
                result = StageResult(state.get("metrics", {}), state.get("artifacts", {}))
                previous = run.load_summary()["stages"].get(stage, {})
                run.record_stage(stage, "done", previous.get("seconds", 0.0), result, cached=True)
                write_run_recipe(run, recipe)
            cached.append(stage)
            continue
        _refuse_links(run, stage)
        upstream = {s: hashes[s] for s in STAGE_SPECS[stage].needs if s in hashes}
        t0 = time.perf_counter()
        if caching and stage in CACHED_STAGES and not force:
            hit = _restore_stage(cache, run, recipe, stage, h, upstream) if cache else None
            if broadcast_object(hit is not None):
                seconds = time.perf_counter() - t0
                if info.is_main and hit is not None:
                    result = StageResult(hit.result["metrics"], hit.result["artifacts"])
                    origin = {
                        "entry": hit.entry,
                        "built_seconds": hit.built_seconds,
                        "built_in": hit.built_in,
                    }
                    run.record_stage(stage, "done", seconds, result, from_cache=origin)
                    run.refresh_stale(AVAILABLE_STAGES)
                    write_run_recipe(run, recipe)
                    logger.info(
                        "%s: taken from the stage cache in %.1f s (built in %.1f s by %s)",
                        stage,
                        seconds,
                        hit.built_seconds,
                        hit.built_in,
                    )
                restored.append(stage)
                continue
        seed_everything(recipe.seed)
        logger.info("%s: running", stage)
        ctx = StageContext(recipe, run.root, run.metrics, info, resume, h)
        offset = run.metrics.path.stat().st_size if cache else 0
        t0 = time.perf_counter()
        error: str | None = None
        try:
            if info.is_main or STAGE_SPECS[stage].resumable:
                result = _run_stage(ctx, run, stage, h, upstream)
        except BaseException as e:
            status, error, instead = _failure(e, stage, run.root)
            if info.is_main:
                try:
                    run.record_stage(stage, status, time.perf_counter() - t0, error=error)
                except OSError as record_error:  # e.g. the disk that failed the stage
                    logger.warning("could not record the failure in summary.json: %s", record_error)
            if instead is not None:
                raise instead from e
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
            run.refresh_stale(AVAILABLE_STAGES)
            write_run_recipe(run, recipe)
        logger.info("%s: done in %.1f s", stage, seconds)
        if cache is not None and stage in CACHED_STAGES:
            events = _events_since(run.metrics.path, offset, stage)
            _store_stage(cache, run, stage, h, result, events, seconds)
        ran.append(stage)
    return RunOutcome(run.root, run.load_summary(), ran, cached, restored)
