"""Building blocks for typed stage configs: strict models and validated field types.

Every config model forbids unknown keys, so a typo is an error naming the key (and the
closest valid one, added by ``lmforge.recipe``) instead of a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict


class StrictModel(BaseModel):
    # allow_inf_nan=False: YAML's .inf/.nan (or "inf" in --set) in any float field is an
    # error naming the field; a bound such as ``gt=0`` alone lets +inf through, and an
    # infinite learning rate "trains" to all-NaN weights.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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


MAX_LR = 1.0


def _learning_rate(v: float) -> float:
    if not 0 < v <= MAX_LR:
        raise ValueError(
            f"must be in (0, {MAX_LR:g}]: AdamW and LAMB move each weight by about lr per "
            "step, so a larger value only diverges (typical: 1e-4 to 5e-3)"
        )
    return v


def _known_encoding(v: str) -> str:
    import codecs

    try:
        codecs.lookup(v)
    except LookupError:
        raise ValueError(
            f"unknown text encoding {v!r}; use a Python codec name such as utf-8, gbk, "
            "gb18030, big5, shift_jis or latin-1"
        ) from None
    return v


def _existing_path(v: Path) -> Path:
    if not v.exists():
        raise ValueError(f"no such file or directory: {v}")
    return v.resolve()  # the run may later change directory; keep what the user meant


def _positive(v: int) -> int:
    if v <= 0:
        raise ValueError("must be a positive integer")
    return v


FractionOC = Annotated[float, AfterValidator(_unit_open_closed)]  # (0, 1]
FractionCO = Annotated[float, AfterValidator(_unit_closed_open)]  # [0, 1)
Fraction = Annotated[float, AfterValidator(_unit_closed)]  # [0, 1]
ExistingPath = Annotated[Path, AfterValidator(_existing_path)]
# where a stage runs its model: auto picks a CUDA GPU when there is one
Device = Literal["auto", "cpu", "cuda"]
PositiveInt = Annotated[int, AfterValidator(_positive)]
LearningRate = Annotated[float, AfterValidator(_learning_rate)]  # (0, 1]
Encoding = Annotated[str, AfterValidator(_known_encoding)]  # a codec Python knows


def type_label(ann: object) -> str:
    """A short readable name for a field annotation: ``int | None``, ``'bpe' | 'wordpiece'``."""
    import types
    import typing

    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Annotated:
        return type_label(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_label(a) for a in args)
    if origin is not None:
        return (
            f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_label(a) for a in args)}]"
        )
    if ann is type(None):
        return "None"
    return getattr(ann, "__name__", str(ann))


def fields_markdown(model: type[BaseModel]) -> str:
    """Every key of ``model`` as a Markdown table per top-level section (docs/recipe-reference.md
    is this text for the recipe; a test keeps the file in sync with the schema)."""
    out = ["# Recipe reference", "", "Every recipe key (`lmforge schema` prints the same). "
           "Generated from the schema: `lmforge schema --markdown > docs/recipe-reference.md`.", ""]  # fmt: skip

    def nested(row: tuple[str, str, str, str]) -> bool:
        return "." in row[0] or row[1] in ("section", "list")

    section = None
    rows = sorted(describe_fields(model), key=nested)  # top-level keys first (stable sort)
    for path, type_name, default, description in rows:
        top = path.split(".")[0] if nested((path, type_name, "", "")) else "top level"
        if top != section:
            section = top
            out += ["", f"## `{top}`", "", "| key | type | default | description |", "|---|---|---|---|"]  # fmt: skip
        cells = [f"`{path}`", type_name, f"`{default}`" if default else "", description]
        out.append(
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    return "\n".join(out).strip() + "\n"


def describe_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key path, type, default, description) for every field, nested models expanded.

    Lists of models are shown with index ``0`` (``data.sources.0.path``), the form ``--set``
    takes, so the help a user reads is the key they type.
    """
    import typing

    from pydantic_core import PydanticUndefined

    rows: list[tuple[str, str, str, str]] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = info.annotation
        nested, is_list = None, False
        for arg in (ann, *typing.get_args(ann)):
            if typing.get_origin(arg) is list:
                is_list = True
                arg = typing.get_args(arg)[0]
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                nested = arg
                break
        if nested is not None:
            rows.append((path, "list" if is_list else "section", "", info.description or ""))
            rows.extend(describe_fields(nested, f"{path}.0." if is_list else f"{path}."))
            continue
        type_name = type_label(ann)
        if info.default is not PydanticUndefined:
            default = repr(info.default)
        elif info.default_factory is not None:
            default = repr(info.default_factory())
        else:
            default = "required"
        rows.append((path, type_name, default, info.description or ""))
    return rows
