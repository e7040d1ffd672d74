"""A run directory as the report reads it: tolerant of every file being missing or torn.

A report is also written for a failed or interrupted run, so nothing here assumes a stage
finished: unreadable files become ``problems`` listed in the report instead of exceptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError

RUN_FILES = ("summary.json", "recipe.yaml")
# statuses whose stage folder is complete (stale: made from upstream outputs since replaced)
COMPLETE = ("done", "stale", "skipped")
# statuses of a stage that started and stopped early, keeping its work folder if resumable
STOPPED = ("failed", "interrupted")


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` looks like a directory ``lmforge run`` made."""
    return path.is_dir() and any((path / name).is_file() for name in RUN_FILES)


def check_run_dir(path: Path) -> None:
    """Raises ``LmforgeError`` saying why ``path`` is not a run directory."""
    if not path.exists():
        raise LmforgeError(f"{path} does not exist; give the run directory `lmforge run` printed")
    if not is_run_dir(path):
        raise LmforgeError(
            f"{path} is not an lmforge run directory (it has neither summary.json nor "
            "recipe.yaml); give the directory `lmforge run` printed, e.g. runs/quickstart-<time>"
        )


@dataclass
class RunView:
    root: Path
    summary: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, root: Path) -> RunView:
        """Read what there is; raises ``LmforgeError`` only when ``root`` is not a run."""
        check_run_dir(root)
        run = cls(root)
        summary = run._read(root / "summary.json", json.loads)
        run.summary = summary if isinstance(summary, dict) else {}
        recipe = run._read(root / "recipe.yaml", _yaml)
        run.recipe = recipe if isinstance(recipe, dict) else {}
        run.events = read_jsonl(root / "metrics.jsonl", run.problems)
        return run

    def _read(self, path: Path, parse: Any) -> Any:
        if not path.exists():
            self.problems.append(f"{path.name} is missing")
            return None
        try:
            return parse(path.read_text(encoding="utf-8"))
        except Exception as e:  # torn or hand-edited file: say so, draw the rest
            self.problems.append(f"{path.name} could not be read ({type(e).__name__}: {e})")
            return None

    @property
    def name(self) -> str:
        return str(self.recipe.get("name") or self.summary.get("name") or self.root.name)

    @property
    def description(self) -> str:
        return str(self.recipe.get("description") or "")

    @property
    def stage_entries(self) -> dict[str, dict[str, Any]]:
        stages = self.summary.get("stages")
        if not isinstance(stages, dict):
            return {}
        return {k: v if isinstance(v, dict) else {} for k, v in stages.items()}

    @cached_property
    def stage_names(self) -> list[str]:
        """Stages the recipe configures or the summary records, in run order."""
        from lmforge.stages import STAGES

        names = [s for s in STAGES if s in self.recipe or s in self.stage_entries]
        return names + [s for s in self.stage_entries if s not in names]

    def stage(self, name: str) -> StageView:
        return StageView(name, self, self.stage_entries.get(name, {}))

    def stage_events(self, stage: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("stage") == stage]


@dataclass
class StageView:
    """One stage's summary entry and output folder (or the folder an interrupted stage left)."""

    name: str
    run: RunView
    entry: dict[str, Any]
    used: set[str] = field(default_factory=set)  # files a section drew; the rest are listed

    @property
    def status(self) -> str:
        return str(self.entry.get("status", "not run"))

    @property
    def metrics(self) -> dict[str, Any]:
        m = self.entry.get("metrics")
        return m if isinstance(m, dict) else {}

    @property
    def artifacts(self) -> dict[str, str]:
        a = self.entry.get("artifacts")
        return a if isinstance(a, dict) else {}

    @property
    def seconds(self) -> float | None:
        s = self.entry.get("seconds")
        return float(s) if isinstance(s, int | float) else None

    @property
    def config(self) -> dict[str, Any]:
        c = self.run.recipe.get(self.name)
        return c if isinstance(c, dict) else {}

    @cached_property
    def dir(self) -> Path | None:
        """The completed stage folder; for a stage that failed or has not finished, the work
        folder it kept (a completed folder there is an earlier run's output, not this one's)."""
        final, partial = self.run.root / self.name, self.run.root / f".{self.name}.partial"
        folder = final if self.status in COMPLETE else partial
        return folder if folder.is_dir() else None

    def path(self, relative: str) -> Path | None:
        """A file in the stage folder, marked as drawn; None if absent."""
        if self.dir is None or not (self.dir / relative).is_file():
            return None
        self.used.add(relative)
        return self.dir / relative

    def read_json(self, relative: str) -> Any:
        path = self.path(relative)
        if path is None:
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            self.run.problems.append(f"{self.name}/{relative} could not be read: {e}")
            return None

    def read_jsonl(self, relative: str) -> list[dict[str, Any]]:
        path = self.path(relative)
        return [] if path is None else read_jsonl(path, self.run.problems)

    def events(self) -> list[dict[str, Any]]:
        return self.run.stage_events(self.name)


def read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    """Objects of a JSON-lines file; a torn last line (a crash mid-write) is skipped."""
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        problems.append(f"{path.name} could not be read: {e}")
        return rows
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            problems.append(f"{path.name}: line {number} is not JSON (skipped)")
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)
