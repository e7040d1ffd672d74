"""The recipe: one YAML file, one typed section per lifecycle stage.

Loading validates everything before any work starts. Errors name the field path
(``data.dedup.threshold: must be in (0, 1]``) and, for a mistyped key, the closest valid one.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.resources
import platform
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from lmforge import __version__
from lmforge.compress.config import CompressConfig
from lmforge.core.errors import RecipeError
from lmforge.core.schema import StrictModel
from lmforge.data.config import DataConfig
from lmforge.evaluate.config import EvaluateConfig
from lmforge.explain.config import ExplainConfig
from lmforge.finetune.config import FinetuneConfig
from lmforge.pretrain.config import PretrainConfig
from lmforge.stages import AVAILABLE_STAGES, STAGE_LIST, STAGE_SPECS, STAGES
from lmforge.tokenizer.config import TokenizerConfig

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# runs/<name>-<YYYYmmdd-HHMMSS>-<n> must stay far below the 255 bytes a file name may have
NAME_MAX = 100


class Recipe(StrictModel):
    """A whole run: name, seed, then one optional section per stage."""

    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=NAME_MAX,
        description=f"Run name (at most {NAME_MAX} characters); runs go to "
        "runs/<name>-<timestamp>.",
    )
    description: str = Field("", description="One line shown by `lmforge recipes`.")
    seed: int = Field(0, ge=0, description="Seed for every random number generator of the run.")
    data: DataConfig | None = Field(None, description=STAGE_SPECS["data"].description)
    tokenizer: TokenizerConfig | None = Field(
        None, description=STAGE_SPECS["tokenizer"].description
    )
    pretrain: PretrainConfig | None = Field(None, description=STAGE_SPECS["pretrain"].description)
    finetune: FinetuneConfig | None = Field(None, description=STAGE_SPECS["finetune"].description)
    evaluate: EvaluateConfig | None = Field(None, description=STAGE_SPECS["evaluate"].description)
    compress: CompressConfig | None = Field(None, description=STAGE_SPECS["compress"].description)
    explain: ExplainConfig | None = Field(None, description=STAGE_SPECS["explain"].description)
    versions: dict[str, str] | None = Field(
        None, description="Written by lmforge into a run's recipe.yaml; ignored on input."
    )

    @model_validator(mode="after")
    def _cross_section_checks(self) -> Recipe:
        """Each configured stage checks what it needs from the other sections."""
        if not self.stages():  # `validate` and `run` agree: nothing to run is a mistake
            raise ValueError(
                "the recipe configures no stage; add at least one section "
                f"({', '.join(AVAILABLE_STAGES)}; see `lmforge schema`)"
            )
        for spec in STAGE_LIST:
            if spec.check is not None and getattr(self, spec.name) is not None:
                spec.check(self)
        return self

    def stages(self) -> list[str]:
        """The stages this recipe configures, in run order."""
        return [s for s in AVAILABLE_STAGES if getattr(self, s) is not None]


# ---------------------------------------------------------------- built-in recipes


def _builtin_dir() -> Path:
    return Path(str(importlib.resources.files("lmforge") / "recipes"))


def builtin_recipes() -> dict[str, Path]:
    """Name -> path of the YAML recipes shipped with the package."""
    return {p.stem: p for p in sorted(_builtin_dir().glob("*.yaml"))}


def recipe_description(path: Path) -> str:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return str(raw.get("description", "")) if isinstance(raw, dict) else ""


def resolve_recipe_path(source: str | Path) -> Path:
    """A recipe file path, or the name of a built-in recipe."""
    path = Path(source)
    if path.is_file():
        return path
    builtins = builtin_recipes()
    if str(source) in builtins:
        return builtins[str(source)]
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        raise RecipeError(f"recipe file not found: {source}")
    close = difflib.get_close_matches(str(source), builtins, n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    raise RecipeError(
        f"{source!r} is neither a recipe file nor a built-in recipe;{hint} "
        f"Built-in recipes: {', '.join(builtins)} (see `lmforge recipes`)."
    )


# ---------------------------------------------------------------- overrides


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``key.path=value`` (value parsed as YAML; list items by index) to ``raw`` in place."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set expects key.path=value, got {assignment!r}")
    parts = key.strip().split(".")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise RecipeError(f"--set {key}: cannot parse value {value!r}: {e}") from None
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(
                    f"--set {key}: {where} is not an index of a list of {len(node)} items"
                )
            if last:
                node[int(part)] = parsed
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = parsed
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise RecipeError(f"--set {key}: {'.'.join(parts[:i])} is a value, not a section")


# ---------------------------------------------------------------- validation errors


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Walk the recipe schema along an error location (skipping list indices)."""
    model: type[BaseModel] | None = Recipe
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _model_in(model.model_fields[part].annotation)
    return model


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    path = ".".join(str(p) for p in loc) or "recipe"
    kind = err["type"]
    if kind == "extra_forbidden":
        *parent, key = loc
        if not parent and key in STAGES:
            return (
                f"{key}: the '{key}' stage is not available in lmforge {__version__}; "
                f"available stages: {', '.join(AVAILABLE_STAGES)}"
            )
        model = _model_at(tuple(parent))
        fields = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        known = f" Valid keys: {', '.join(fields)}." if fields else ""
        return f"{path}: unknown key{hint}{known}"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if kind == "missing":
        msg = "required field is missing"
    elif kind == "string_pattern_mismatch" and loc == ("name",):
        msg = "use letters, digits, '.', '_' or '-' (it becomes a directory name)"
    elif kind == "string_too_long" and loc == ("name",):
        msg = f"at most {NAME_MAX} characters (it becomes a directory name)"
    if not loc:  # whole-recipe checks name their fields themselves
        return msg
    return f"{path}: {msg}"


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [_describe(e) for e in error.errors()]
    head = f"invalid recipe {source}" + (f" ({len(lines)} errors)" if len(lines) > 1 else "")
    return head + ":\n  " + "\n  ".join(lines)


# ---------------------------------------------------------------- loading


def parse_recipe(
    raw: Any, source: str = "recipe", overrides: list[str] | tuple[str, ...] = ()
) -> Recipe:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(
            f"{source}: a recipe is a YAML mapping (name, seed, stage sections), got {type(raw).__name__}"
        )
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, source)) from None


class _DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (PyYAML would silently keep the last value)."""


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                earlier = first_line.get(key)
            except TypeError:  # unhashable key: SafeLoader reports it
                continue
            line = key_node.start_mark.line + 1
            if earlier is not None:
                raise _DuplicateKeyError(
                    f"line {line}: duplicate key {key!r} (first at line {earlier}); YAML would "
                    "keep only the last value, so remove or merge one of them"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_recipe(source: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read and validate a recipe file or built-in recipe name; raises RecipeError."""
    path = resolve_recipe_path(source)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_RecipeLoader)
    except OSError as e:
        raise RecipeError(f"cannot read recipe {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise RecipeError(
            f"recipe {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
            f"{e.start}); save it with UTF-8 encoding"
        ) from None
    except _DuplicateKeyError as e:
        raise RecipeError(f"{path}, {e}") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path} is not valid YAML: {e}") from None
    return parse_recipe(raw, str(source), overrides)


def versions() -> dict[str, str]:
    out = {"lmforge": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "tokenizers", "peft"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def resolved_yaml(
    recipe: Recipe,
    sections: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The recipe with every default filled in, plus the versions it ran with.

    Args:
        sections: stage sections to write instead of the recipe's (a run directory writes
            each stage's section as its outputs were made).
        notes: lines written as comments at the top.
    """
    data = recipe.model_dump(mode="json", exclude={"versions"})
    data.update(sections or {})
    data = {k: v for k, v in data.items() if v is not None or k not in STAGES}
    data["versions"] = versions()
    header = "".join(f"# {note}\n" for note in notes)
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
