"""The stage contract: what every lifecycle stage receives, returns and declares.

A stage is a package with a typed config section and a ``stage.py`` that exports one
``StageSpec`` (nanoGPT-style entry point ``run(ctx, out)``: set up, run, save). The runner,
the recipe schema, ``--only`` and the per-stage CLI commands are all driven by the list of
specs in ``lmforge.stages``; this module knows nothing of any particular stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lmforge.core.distributed import DistInfo

if TYPE_CHECKING:
    from pydantic import BaseModel

    from lmforge.core.metrics import MetricsLogger


@dataclass
class StageResult:
    """What a stage returns: numbers for the summary and paths (relative to the stage dir)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageContext:
    """What a stage may use: the validated recipe, its run directory and the metrics log."""

    recipe: Any  # lmforge.recipe.Recipe (typed loosely: core imports no stage or recipe)
    root: Path
    metrics: MetricsLogger  # disabled on ranks other than 0
    dist: DistInfo = DistInfo()
    resume: bool = False  # continue from the stage's own checkpoints, if it keeps any
    input_hash: str = ""  # identity of everything the stage is made from

    def config(self, stage: str) -> Any:
        """The recipe section of ``stage`` (None when the recipe has none)."""
        return getattr(self.recipe, stage, None)

    def stage_dir(self, stage: str) -> Path | None:
        """The completed output directory of an earlier stage, or None if the recipe lacks it."""
        return self.root / stage if self.config(stage) is not None else None


class StageRun(Protocol):
    """One signature for every stage: build the outputs in ``out``, return what to record."""

    def __call__(self, ctx: StageContext, out: Path) -> StageResult: ...


@dataclass(frozen=True)
class StageSpec:
    """Everything the runner, the recipe and the CLI need to know about one stage."""

    name: str
    config: type[BaseModel]  # the recipe section's schema
    description: str  # one line: the recipe section's description and the CLI command's help
    run: StageRun  # (context, output dir) -> result
    # identity of external inputs (files, model directories) for the content hash
    inputs: Callable[[Any], Any] = lambda recipe: None
    needs: tuple[str, ...] = ()  # upstream stages whose outputs this one reads
    # cross-section checks: (recipe) -> None, raising ValueError naming the field
    check: Callable[[Any], None] | None = None
    # resumable stages work in a stable ``.<stage>.partial`` dir kept after a crash, and
    # run on every torchrun process; the others run on rank 0 in a throwaway temp dir
    resumable: bool = False
    # False when ``lmforge <name>`` is a standalone tool rather than "run up to this stage"
    command: bool = True
