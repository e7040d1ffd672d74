"""``lmforge evaluate MODEL_DIR --data FILE``: the evaluate stage on any saved model.

A model lmforge saved names its task, label space, columns and max length in its manifest
(``lmforge.json``), so only the test file is needed; ``--task`` and the column flags are for
models saved elsewhere, or to override. Kept out of ``lmforge.cli`` so the command line stays a
thin table of commands.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError

DEFAULT_COLUMNS = {"text": "text", "label": "label", "question": "question"}


def evaluate_command(
    model_dir: Path,
    *,
    task: str | None,
    data: Path,
    columns: tuple[str | None, str | None, str | None] = (None, None, None),
    max_length: int | None = None,
    batch_size: int | None = None,
    max_examples: int | None = None,
    out: Path | None = None,
    profile: bool = True,
    trust_remote_code: bool = False,
    encoding: str = "utf-8",
    device: str = "auto",
) -> dict[str, Any]:
    """Score, profile and write ``summary.json``; arguments left None come from the model's
    manifest (else the defaults: columns text/label/question, max length 128, batch 16)."""
    from pydantic import ValidationError

    from lmforge.core.atomic import write_json_atomic
    from lmforge.data.config import SourceConfig
    from lmforge.data.sources import LoadStats, load_source
    from lmforge.evaluate.config import EvaluateConfig
    from lmforge.evaluate.stage import align_labels, evaluate_model, scoring_config
    from lmforge.tasks import TASKS
    from lmforge.tasks.artifact import inspect_artifact

    files = inspect_artifact(model_dir, task=task)
    if files.task is None:
        raise LmforgeError(
            f"{model_dir} has no lmforge.json naming its task (a model saved outside lmforge, "
            f"or a pretrained model); pass --task: one of {', '.join(TASKS.names())}"
        )
    saved = files.manifest.columns if files.manifest is not None else {}
    given = dict(zip(("text", "label", "question"), columns, strict=True))
    cols = {k: given[k] or saved.get(k) or DEFAULT_COLUMNS[k] for k in DEFAULT_COLUMNS}
    fcfg = scoring_config(
        files,
        trust_remote_code=trust_remote_code,
        max_length=max_length,
        batch_size=batch_size,
    )
    try:
        ecfg = EvaluateConfig(
            model=str(files.path), max_examples=max_examples, profile=profile, device=device
        )
        src = SourceConfig(
            path=data,
            encoding=encoding,
            text_column=cols["text"],
            label_column=cols["label"],
            question_column=cols["question"] if files.task.name == "extractive-qa" else None,
        )
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise LmforgeError(f"evaluate: {where}: {first['msg']}") from None
    docs = load_source(src, LoadStats())
    if files.info is None:  # no manifest: the test file's labels, in the model's order
        info = files.task.prepare({"train": docs, "val": [], "test": docs})
        files = dataclasses.replace(files, info=align_labels(info, files.path))
    out = out or Path("runs") / f"evaluate-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics, artifacts = evaluate_model(
        files, docs, fcfg, ecfg, out, f"{Path(model_dir).name}: evaluate"
    )
    summary = {
        "model": str(model_dir),
        "task": files.task.name,
        "data": str(data),
        "columns": cols,
        "metrics": metrics,
        "artifacts": artifacts,
    }
    write_json_atomic(out / "summary.json", {"evaluate": summary})
    return {**summary, "out": str(out)}
