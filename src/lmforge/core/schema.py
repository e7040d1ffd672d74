"""Building blocks for typed stage configs: strict models and validated field types.

Every config model forbids unknown keys, so a typo is an error naming the key (and the
closest valid one, added by ``lmforge.recipe``) instead of a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _unit_open_closed(v: float) -> float:
    if not 0 < v <= 1:
        raise ValueError("must be in (0, 1]")
    return v


def _unit_closed_open(v: float) -> float:
    if not 0 <= v < 1:
        raise ValueError("must be in [0, 1)")
    return v


def _unit_closed(v: float) -> float:
    if not 0 <= v <= 1:
        raise ValueError("must be in [0, 1]")
    return v


def _existing_path(v: Path) -> Path:
    if not v.exists():
        raise ValueError(f"no such file or directory: {v}")
    return v


def _positive(v: int) -> int:
    if v <= 0:
        raise ValueError("must be a positive integer")
    return v


FractionOC = Annotated[float, AfterValidator(_unit_open_closed)]  # (0, 1]
FractionCO = Annotated[float, AfterValidator(_unit_closed_open)]  # [0, 1)
Fraction = Annotated[float, AfterValidator(_unit_closed)]  # [0, 1]
ExistingPath = Annotated[Path, AfterValidator(_existing_path)]
PositiveInt = Annotated[int, AfterValidator(_positive)]
