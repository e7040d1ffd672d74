"""The run directory: resolved recipe, metrics log, summary, one sub-directory per stage.

Layout::

    <run>/recipe.yaml     fully resolved recipe + versions + seed
    <run>/metrics.jsonl   one JSON event per logged value
    <run>/summary.json    {"name", "stages": {stage: {status, seconds, metrics, artifacts}}}
    <run>/<stage>/        the stage's outputs, swapped in atomically when complete
    <run>/<stage>/_stage.json  the input hash the outputs were made from (for skipping)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from lmforge.core.atomic import write_json_atomic, write_text_atomic
from lmforge.core.metrics import MetricsLogger
from lmforge.core.stage import StageResult

Status = Literal["done", "failed", "skipped"]
STAGE_STATE = "_stage.json"


class RunDir:
    def __init__(self, root: str | Path, name: str, writer: bool = True) -> None:
        """``writer=False`` for processes other than rank 0: they read, never write."""
        self.root = Path(root)
        self.name = name
        if writer:
            self.root.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsLogger(self.root / "metrics.jsonl", enabled=writer)

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def write_recipe(self, yaml_text: str) -> None:
        write_text_atomic(self.root / "recipe.yaml", yaml_text)

    def load_summary(self) -> dict[str, Any]:
        if self.summary_path.exists():
            summary = json.loads(self.summary_path.read_text(encoding="utf-8"))
            summary["name"] = self.name
            return summary
        return {"name": self.name, "stages": {}}

    def record_stage(
        self,
        stage: str,
        status: Status,
        seconds: float,
        result: StageResult | None = None,
        **extra: Any,
    ) -> None:
        """Rewrite summary.json with this stage's entry; artifacts become run-relative paths."""
        summary = self.load_summary()
        result = result or StageResult()
        summary["stages"][stage] = {
            "status": status,
            "seconds": round(float(seconds), 3),
            "metrics": result.metrics,
            "artifacts": {k: f"{stage}/{v}" for k, v in result.artifacts.items()},
            **extra,
        }
        write_json_atomic(self.summary_path, summary)

    def completed_state(self, stage: str) -> dict[str, Any] | None:
        """The saved state of a completed stage, or None if it never completed."""
        path = self.stage_dir(stage) / STAGE_STATE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None


def write_stage_state(stage_dir: Path, input_hash: str, result: StageResult) -> None:
    write_json_atomic(
        stage_dir / STAGE_STATE,
        {"hash": input_hash, "metrics": result.metrics, "artifacts": result.artifacts},
    )
