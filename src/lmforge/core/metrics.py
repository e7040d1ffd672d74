"""Append-only JSONL event log: one object per logged value, readable while a run is going."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


def numbers(values: dict[str, Any]) -> dict[str, int | float]:
    """The scalar numbers of a metrics dict (what metrics.jsonl and metric tables hold)."""
    return {k: v for k, v in values.items() if isinstance(v, int | float)}


class MetricsLogger:
    """Writes ``{"stage", "step", "name", "value", "time"}`` lines to ``metrics.jsonl``.

    Each line is flushed as written so a crash loses at most the event being written.
    """

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()

    def log(self, stage: str, name: str, value: Any, step: int | None = None) -> None:
        self.log_dict(stage, {name: value}, step)

    def log_dict(self, stage: str, values: dict[str, Any], step: int | None = None) -> None:
        """One line per number in ``values`` (other values - label lists, per-class tables -
        belong in summary.json, not in the time series), written with a single open/append."""
        values = numbers(values)
        if not self.enabled or not values:
            return
        now = time.time()
        lines = []
        for name, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = str(value)  # JSON has no NaN/inf; keep the fact, stay parseable
            event = {"stage": stage, "step": step, "name": name, "value": value, "time": now}
            lines.append(json.dumps(event, ensure_ascii=False) + "\n")
        with self.path.open("a", encoding="utf-8") as f:
            f.writelines(lines)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
