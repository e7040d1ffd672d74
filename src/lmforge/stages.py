"""The list of stages a run executes, in order. Each stage package exports its ``SPEC``.

This list drives the recipe's sections and cross-section checks, ``--only``, the runner and
the per-stage CLI commands. Adding a stage is adding a package with a config and a
``stage.py`` that exports ``SPEC``, a section of that config type in ``lmforge.recipe.Recipe``,
and one entry below (``tests/test_stages.py`` fails when they disagree).
"""

from __future__ import annotations

from lmforge.compress.stage import SPEC as COMPRESS
from lmforge.core.stage import StageContext, StageResult, StageSpec
from lmforge.data.stage import SPEC as DATA
from lmforge.evaluate.stage import SPEC as EVALUATE
from lmforge.explain.stage import SPEC as EXPLAIN
from lmforge.finetune.stage import SPEC as FINETUNE
from lmforge.pretrain.stage import SPEC as PRETRAIN
from lmforge.tokenizer.stage import SPEC as TOKENIZER

STAGE_LIST: tuple[StageSpec, ...] = (
    DATA,
    TOKENIZER,
    PRETRAIN,
    FINETUNE,
    EVALUATE,
    COMPRESS,
    EXPLAIN,
)
STAGE_SPECS: dict[str, StageSpec] = {spec.name: spec for spec in STAGE_LIST}
# Stages this version implements, in run order.
AVAILABLE_STAGES: tuple[str, ...] = tuple(STAGE_SPECS)
# Stage names reserved for what is coming; a recipe naming one is told it is not available yet.
PLANNED_STAGES: tuple[str, ...] = ("serve", "report")
STAGES: tuple[str, ...] = AVAILABLE_STAGES + PLANNED_STAGES

__all__ = [
    "AVAILABLE_STAGES",
    "PLANNED_STAGES",
    "STAGES",
    "STAGE_LIST",
    "STAGE_SPECS",
    "StageContext",
    "StageResult",
    "StageSpec",
]
