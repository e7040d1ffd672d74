"""One way to load what a run made: ``load_artifact(path)`` -> model, processor, task, labels.

Every model directory lmforge saves carries a manifest (``lmforge.json``, see
``lmforge.core.manifest``) naming its task, the task's label space, its data columns and, for a
peft adapter, its base model as a path relative to the run directory. So a stage or command
never re-derives what the saving stage knew (re-reading training data for the labels, guessing
``finetune/merged`` vs ``finetune/model``, or trusting the absolute base path in peft's
``adapter_config.json``), and a run directory still loads after it is moved or copied whole::

    art = load_artifact("runs/ft-20250101-120000/finetune/model")
    art.task.name, art.info.labels       # "classification", ["business", "sport", "tech"]
    art.model, art.processor             # PeftModel on finetune/base, the tokenizer

A directory without a manifest (a model from elsewhere) loads too when the caller names the
task and gives its info, as ``lmforge evaluate --task`` does.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.core.manifest import Manifest, read_manifest
from lmforge.tasks.base import TASKS, Task

PROCESSOR_FILES = ("tokenizer_config.json", "preprocessor_config.json")


def info_type(task: Task) -> type:
    """The dataclass a task's ``prepare`` returns (its return annotation): the label space."""
    hints = typing.get_type_hints(task.prepare)
    kind = hints.get("return")
    if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
        raise LmforgeError(
            f"task {task.name!r}: prepare() must be annotated to return a dataclass (its info), "
            f"found {kind!r}; the artefact manifest stores that dataclass as JSON"
        )
    return kind


def info_to_json(info: Any) -> dict[str, Any] | None:
    """A task info as the manifest stores it: its dataclass fields (labels, flags, numbers)."""
    return dataclasses.asdict(info) if dataclasses.is_dataclass(info) else None


def info_from_json(task: Task, data: dict[str, Any], where: Path) -> Any:
    """The task info a manifest recorded, as the task's own dataclass."""
    kind = info_type(task)
    try:
        return kind(**data)
    except TypeError as e:
        raise LmforgeError(
            f"{where}: the manifest's info does not fit the {task.name!r} task's "
            f"{kind.__name__} ({e}); was it written by another lmforge version?"
        ) from None


def base_reference(ref: str, resolved: Path, root: Path) -> str:
    """What a manifest records for a base model: a path relative to the run directory when the
    model lives in the run, the built-in name when ``ref`` is one, else the absolute path."""
    from lmforge.models.builtin import BUILTIN_MODELS

    resolved, root = Path(resolved).resolve(), Path(root).resolve()
    if resolved.is_relative_to(root):
        return resolved.relative_to(root).as_posix()
    if ref in BUILTIN_MODELS and not Path(ref).is_dir():
        return ref
    return str(resolved)


def resolve_base(directory: Path, manifest: Manifest) -> Path:
    """The base model directory of the adapter in ``directory``, from its manifest's ``base``.

    Raises:
        LmforgeError: the base is missing (a part of the run was copied without it).
    """
    from lmforge.models.builtin import resolve_model_path

    base = manifest.base
    if not base:
        raise LmforgeError(f"{directory / 'lmforge.json'}: an adapter manifest needs 'base'")
    if Path(base).is_absolute():
        path = Path(base)
    elif "/" in base:  # relative to the run directory ("finetune/base", "pretrain/model")
        root = manifest.run_root(directory)
        if root is None:
            raise LmforgeError(
                f"{directory / 'lmforge.json'}: base {base!r} is relative to the run directory, "
                "but the manifest has no 'location' to find that directory from"
            )
        path = root / base
    else:  # a built-in model name
        return resolve_model_path(base)
    if not (path / "config.json").is_file():
        raise LmforgeError(
            f"the adapter {directory} loads onto its base model {base!r}, which is missing "
            f"({path} has no config.json); move or copy the whole run directory, not only "
            f"{manifest.location or directory.name}"
        )
    return path


@dataclass(frozen=True)
class ArtifactFiles:
    """A saved model directory and what its manifest says, read without loading weights."""

    path: Path  # the directory (a built-in name resolved to its directory)
    manifest: Manifest | None  # None: a model saved outside lmforge
    task: Task | None  # None: a pretrained model with no task head
    info: Any  # the task's label space (LabelInfo, TagInfo, ...), None without a task
    base: Path | None  # a peft adapter's base model directory; None for a whole model

    @property
    def kind(self) -> str:
        """The manifest's kind; ``adapter`` or ``full`` for a directory without one."""
        if self.manifest is not None:
            return self.manifest.kind
        return "adapter" if self.base is not None else "full"


@dataclass(frozen=True)
class Artifact(ArtifactFiles):
    """A saved model, loaded: the model in eval mode and its tokenizer or image processor."""

    model: Any
    processor: Any


def _legacy_adapter_base(directory: Path) -> Path:
    """The base of an adapter without a manifest: peft's ``base_model_name_or_path``."""
    config = directory / "adapter_config.json"
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base or not (Path(base) / "config.json").is_file():
        raise LmforgeError(
            f"{directory} is a peft adapter whose base model {base!r} is not a local directory "
            "(and it has no lmforge.json naming one); evaluate a merged model instead "
            "(finetune.merge: true)"
        )
    return Path(base)


def inspect_artifact(
    path: str | Path, *, task: str | None = None, info: Any = None
) -> ArtifactFiles:
    """What the model directory ``path`` (or a built-in model name) holds, without torch.

    Args:
        task: the task the caller expects; must agree with the manifest's, and is required for
            a directory without a manifest.
        info: the label space for a directory without a manifest (the manifest's wins).

    Raises:
        LmforgeError: not a model directory, a task that disagrees with the manifest, or an
            adapter whose base model is missing.
    """
    from lmforge.models.builtin import resolve_model_path

    directory = Path(path).expanduser()
    if not directory.is_dir():
        directory = resolve_model_path(str(path))  # a built-in name, or a clear error
    is_adapter = (directory / "adapter_config.json").is_file()
    if not is_adapter and not (directory / "config.json").is_file():
        raise LmforgeError(
            f"{path} is not a saved model: it has no config.json (a transformers model) and no "
            "adapter_config.json (a peft adapter)"
        )
    manifest = read_manifest(directory)
    name = manifest.task if manifest is not None and manifest.task else None
    if task is not None and name is not None and task != name:
        raise LmforgeError(
            f"{path} was fine-tuned for the {name!r} task (its lmforge.json), not {task!r}; "
            f"drop --task or pass --task {name}"
        )
    name = name or task
    found = TASKS.get(name) if name is not None else None
    if found is not None and manifest is not None and manifest.info is not None:
        info = info_from_json(found, manifest.info, directory)
    if is_adapter:
        base = (
            resolve_base(directory, manifest)
            if manifest is not None
            else _legacy_adapter_base(directory)
        )
    else:
        base = None
    return ArtifactFiles(directory, manifest, found, info, base)


def load_artifact(
    path: str | Path,
    *,
    task: str | None = None,
    info: Any = None,
    trainable: bool = False,
    trust_remote_code: bool = False,
) -> Artifact:
    """Load a saved model with its task head, processor and label space (see the module doc).

    A peft adapter loads onto its base in plain peft (``PeftModel.from_pretrained``); with
    ``trainable`` its parameters keep ``requires_grad`` (to count or train them further).

    Raises:
        LmforgeError: as ``inspect_artifact``; also a directory with no task (a pretrained
            model: name one) or a model whose head was never trained for its task.
    """
    files = inspect_artifact(path, task=task, info=info)
    if files.task is None:
        raise LmforgeError(
            f"{path} has no task head (a pretrained model, or no lmforge.json naming its task); "
            "name the task it was fine-tuned for"
        )
    load = files.task.load_model
    if files.base is None:
        model = load(
            files.path, files.info, trust_remote_code=trust_remote_code, for_inference=True
        )
        processor = files.task.load_processor(files.path)
    else:
        from peft import PeftModel

        # the head comes from the adapter (peft's modules_to_save), so the base may lack one
        base = load(files.base, files.info, trust_remote_code=trust_remote_code)
        model = PeftModel.from_pretrained(base, files.path, is_trainable=trainable)
        if files.task.name == "token-classification":  # a CRF head saves beside the adapter
            from lmforge.tasks.crf import with_crf

            model = with_crf(model, files.path)
        own = any((files.path / name).is_file() for name in PROCESSOR_FILES)
        processor = files.task.load_processor(files.path if own else files.base)
    model.eval()
    fields = {f.name: getattr(files, f.name) for f in dataclasses.fields(ArtifactFiles)}
    return Artifact(**fields, model=model, processor=processor)
