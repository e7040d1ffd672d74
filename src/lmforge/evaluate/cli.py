"""``lmforge evaluate MODEL_DIR --task --data``: the evaluate stage on any saved model.

Kept out of ``lmforge.cli`` so the command line stays a thin table of commands.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError


def evaluate_command(
    model_dir: Path,
    *,
    task: str,
    data: Path,
    columns: tuple[str, str, str],
    max_length: int,
    batch_size: int,
    max_examples: int | None,
    out: Path | None,
    profile: bool,
) -> dict[str, Any]:
    """Validate the arguments as a recipe would, score, profile and write ``summary.json``."""
    from pydantic import ValidationError

    from lmforge.core.atomic import write_json_atomic
    from lmforge.data.config import SourceConfig
    from lmforge.data.sources import LoadStats, load_source
    from lmforge.evaluate.config import EvaluateConfig
    from lmforge.evaluate.stage import evaluate_model
    from lmforge.finetune.config import FinetuneConfig
    from lmforge.tasks import TASKS

    text_column, label_column, question_column = columns
    try:
        fcfg = FinetuneConfig(
            task=task,
            method="full",
            model={"path": str(model_dir)},
            data={
                "text_column": text_column,
                "label_column": label_column,
                "question_column": question_column,
            },
            max_length=max_length,
            batch_size=batch_size,
        )
        ecfg = EvaluateConfig(model=str(model_dir), max_examples=max_examples, profile=profile)
        src = SourceConfig(
            path=data,
            text_column=text_column,
            label_column=label_column,
            question_column=question_column if task == "extractive-qa" else None,
        )
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise LmforgeError(f"evaluate: {where}: {first['msg']}") from None
    docs = load_source(src, LoadStats())
    info = TASKS.get(task).prepare({"train": docs, "val": [], "test": docs})
    out = out or Path("runs") / f"evaluate-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics, artifacts = evaluate_model(
        task, Path(model_dir), docs, info, fcfg, ecfg, out, f"{Path(model_dir).name}: evaluate"
    )
    summary = {
        "model": str(model_dir),
        "task": task,
        "data": str(data),
        "metrics": metrics,
        "artifacts": artifacts,
    }
    write_json_atomic(out / "summary.json", {"evaluate": summary})
    return {**summary, "out": str(out)}
