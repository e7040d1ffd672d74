"""``lmforge improve RUN_DIR``: corrections from the feedback store -> a better fine-tune.

1. Read the corrections ``POST /v1/feedback`` stored in ``RUN/serve/feedback.sqlite`` and
   turn each into a training example of the run's task (``improve.corrections``: a label or
   labels, NER entities, a QA answer, a translation or a reply, with the feedback's or the
   logged input). Rows that cannot be one are skipped and counted by reason.
2. Score the current model on the run's test split.
3. Re-run the run's fine-tune, as its recipe.yaml says, on train + corrections (written to
   ``RUN/improve/train.jsonl``), into a temporary folder, and score it on the same test split.
4. Swap the new ``finetune/`` in atomically (the old model serves until then, and stays if
   anything fails), mark stages that read the old model stale, and record both scores in
   summary.json as the ``improve`` entry.

A running server keeps the model it loaded; restart it to serve the improved one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger
from lmforge.data.document import Document
from lmforge.improve.corrections import ROUTES, correction_docs, write_training_file

__all__ = ["TASKS_IMPROVED", "correction_docs", "improve", "score"]

TASKS_IMPROVED = tuple(ROUTES)


def score(model_dir: Path, docs: list[Document], cfg: Any) -> dict[str, Any]:
    """The task's metrics (numbers only) of the model in ``model_dir`` on ``docs``."""
    from lmforge.tasks.artifact import load_artifact

    art = load_artifact(model_dir)
    task = art.task
    assert task is not None
    enc = task.encode(art.processor, docs, art.info, cfg, "test")
    predictions = task.predict(art.model, enc, art.processor, art.info, cfg)
    scores = task.metrics(enc.references, predictions, art.info)
    return {k: v for k, v in scores.items() if isinstance(v, int | float)}


def improve(root: Path, feedback_db: Path | None = None) -> dict[str, Any]:
    """Run steps 1-4 of the module doc on the run directory ``root``; returns the summary entry.

    Raises:
        LmforgeError: no fine-tuned model, no feedback store, no usable correction, or a task
            improve cannot learn from.
    """
    from lmforge.core.atomic import atomic_dir, write_json_atomic
    from lmforge.core.rundir import open_run_dir, write_stage_state
    from lmforge.core.stage import StageContext, StageResult
    from lmforge.finetune.stage import run_finetune_stage
    from lmforge.recipe import load_recipe
    from lmforge.serve.feedback import read_corrections
    from lmforge.stages import AVAILABLE_STAGES
    from lmforge.tasks.artifact import inspect_artifact
    from lmforge.tasks.data import load_labelled

    root = Path(root)
    recipe_file, db = root / "recipe.yaml", feedback_db or root / "serve" / "feedback.sqlite"
    if not recipe_file.is_file() or not (root / "finetune" / "model").is_dir():
        raise LmforgeError(
            f"{root} has no fine-tuned model (finetune/model and recipe.yaml): improve re-runs "
            "a run's fine-tune, so run a recipe with a finetune section first"
        )
    if not db.is_file():
        raise LmforgeError(
            f"no feedback store at {db}: serve the run (lmforge serve {root}) and send "
            "corrections to POST /v1/feedback first, or pass --feedback-db"
        )
    recipe = load_recipe(recipe_file)
    cfg = recipe.finetune
    if cfg is None or cfg.task not in TASKS_IMPROVED:
        task = cfg.task if cfg is not None else None
        raise LmforgeError(
            f"improve learns from corrections for {', '.join(TASKS_IMPROVED)} fine-tunes; "
            f"this run's finetune task is {task!r}"
        )
    files = inspect_artifact(root / "finetune" / "model")
    docs, skipped = correction_docs(read_corrections(db), cfg.task, files.info)
    if not docs:
        raise LmforgeError(
            f"{db} holds no correction improve can learn from (skipped: {skipped}); a "
            "correction needs its input (send 'input' with the feedback, or serve with "
            "--log-inputs) and a label, entity types or an answer the model can learn"
        )
    with open_run_dir(root, recipe.name) as run:
        t0 = time.perf_counter()
        ctx = StageContext(recipe, run.root, run.metrics)
        splits = load_labelled(cfg, ctx)
        before = score(_served_dir(root), splits["test"], cfg)
        logger.info("improve: %d corrections (skipped %s); before: %s", len(docs), skipped, before)
        columns = {
            "text": cfg.data.text_column,
            "label": cfg.data.label_column,
            "question": cfg.data.question_column,
        }
        train_file = write_training_file(
            root / "improve" / "train.jsonl", splits["train"] + docs, cfg.task, columns
        )
        # val/test stay where they were read from (files, or the data stage's splits)
        data = cfg.data.model_copy(update={"train": train_file, "limit": None})
        new_cfg = cfg.model_copy(update={"data": data})
        new_recipe = recipe.model_copy(update={"finetune": new_cfg})
        state = run.completed_state("finetune") or {}
        new_hash = f"{state.get('hash', '')}+improve-{len(docs)}"
        with atomic_dir(root / "finetune") as tmp:
            result = run_finetune_stage(StageContext(new_recipe, run.root, run.metrics), tmp)
            after = {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}
            write_stage_state(tmp, new_hash, result, state.get("upstream"), state.get("made_from"))
            run.refresh_stale(AVAILABLE_STAGES, pending={"finetune": new_hash})
        run.record_stage("finetune", "done", time.perf_counter() - t0, result, improved=True)
        metric = _main_metric(cfg.task)
        entry = {
            "corrections": len(docs),
            "skipped": skipped,
            "train_examples": len(splits["train"]) + len(docs),
            "test_examples": len(splits["test"]),
            "main_metric": metric,
            "before": before,
            "after": {k: after[k] for k in before if k in after},
            "feedback_db": str(db),
        }
        write_json_atomic(root / "improve" / "result.json", entry)
        seconds = time.perf_counter() - t0
        run.record_stage(
            "improve",
            "done",
            seconds,
            StageResult(metrics=entry, artifacts={"train": "train.jsonl", "result": "result.json"}),
        )
        run.refresh_stale(AVAILABLE_STAGES)
    return entry


def _served_dir(root: Path) -> Path:
    """The fine-tuned model ``lmforge serve`` serves for this run, uncompressed: the one the
    new fine-tune replaces, scored the same way before and after."""
    from lmforge.serve.loader import pick_artifact

    return pick_artifact(root, uncompressed=True)[0]


def _main_metric(task: str) -> str:
    from lmforge.tasks import TASKS

    return TASKS.get(task).main_metric
