"""``lmforge.json``: the manifest beside every model directory lmforge saves.

Transformers' ``config.json`` says what the network is; the manifest says what the stage that
saved it knew and a later stage would otherwise have to re-derive: the task, its label space,
the data columns, the length limit, the fine-tuning method, and - for a peft adapter - which
base model it loads onto. Example (``RUN/finetune/model/lmforge.json``)::

    {"format": 1, "lmforge": "0.1.0", "kind": "adapter", "location": "finetune/model",
     "base": "finetune/base", "task": "classification", "method": "lora",
     "info": {"labels": ["business", "sport", "tech"], "multi_label": false},
     "columns": {"text": "body", "label": "topic", "question": "question"},
     "max_length": 128, "settings": {"batch_size": 16, ...}}

``base`` is a path relative to the run directory (``finetune/base``, ``pretrain/model``), a
built-in model name (``minilm-l6``), or an absolute path for a directory outside the run;
``location`` is this directory's own path inside its run, so the run directory is found from
the artefact alone and the run can be moved or copied as a whole.

This module only reads and writes the file; what the fields mean to a task is
``lmforge.tasks.artifact``'s business. The file is plain JSON: tools without lmforge can read it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lmforge import __version__
from lmforge.core.atomic import write_json_atomic
from lmforge.core.errors import LmforgeError

MANIFEST = "lmforge.json"
FORMAT = 1  # raised when a field changes meaning; readers refuse newer formats
Kind = Literal["full", "merged", "adapter", "base", "pretrained"]
KINDS: tuple[str, ...] = ("full", "merged", "adapter", "base", "pretrained")


@dataclass(frozen=True)
class Manifest:
    """What a saved model directory is. Every field but ``kind`` is optional."""

    # full: a whole fine-tuned model; merged: adapter folded into the base weights; adapter: a
    # peft adapter (needs ``base``); base: the initial model an adapter adapts; pretrained: a
    # pretrain stage's model (no task head)
    kind: Kind
    location: str | None = None  # this directory inside its run, e.g. "finetune/model"
    base: str | None = None  # adapter: run-relative path, built-in name or absolute path
    task: str | None = None  # a registered task name (lmforge.tasks)
    method: str | None = None  # the fine-tuning method (lora, full, ...)
    info: dict[str, Any] | None = None  # the task's label space as JSON (fields of its info)
    columns: dict[str, str] = field(default_factory=dict)  # text / label / question columns
    max_length: int | None = None  # tokens per example it was trained with
    objective: str | None = None  # pretrained: clm, mlm, ...
    settings: dict[str, Any] = field(default_factory=dict)  # other options prediction reads
    lmforge: str = __version__
    format: int = FORMAT

    def run_root(self, directory: Path) -> Path | None:
        """The run directory holding ``directory`` (this manifest's), from ``location``."""
        if not self.location:
            return None
        depth = len(Path(self.location).parts)
        directory = Path(directory).resolve()
        return directory.parents[depth - 1] if depth <= len(directory.parents) else None


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write ``directory/lmforge.json`` (atomically) and return its path."""
    path = Path(directory) / MANIFEST
    fields = dataclasses.asdict(manifest)
    head = {"format": fields.pop("format"), "lmforge": fields.pop("lmforge")}  # read first
    write_json_atomic(path, {**head, **fields})
    return path


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest of ``directory``; ``None`` when it has none (a model saved elsewhere).

    Raises:
        LmforgeError: the file is not valid JSON, lacks ``kind``, or has a newer format.
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LmforgeError(f"{path} is not a readable lmforge manifest: {e}") from None
    if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
        raise LmforgeError(f"{path}: 'kind' must be one of {', '.join(KINDS)}")
    if not isinstance(raw.get("format"), int) or raw["format"] > FORMAT:
        raise LmforgeError(
            f"{path} has manifest format {raw.get('format')!r}, newer than this lmforge reads "
            f"({FORMAT}; written by lmforge {raw.get('lmforge')}); upgrade lmforge"
        )
    known = {f.name for f in dataclasses.fields(Manifest)}
    return Manifest(**{k: v for k, v in raw.items() if k in known})  # newer optional keys skip
