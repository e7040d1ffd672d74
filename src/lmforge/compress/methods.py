"""The registry of compression methods: one file per method registers itself here (PEFT's
``register_peft_method``); the stage looks a step's ``method`` up and calls its ``run``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.compress.artifact import Compressed, Format, save_compressed
from lmforge.core.errors import LmforgeError
from lmforge.core.registry import Registry


@dataclass
class StepRun:
    """What a method gets: its config, the artefact it reads, where to write, and the data."""

    step: Any  # the step's config (DistillStep, PruneStep, ...)
    index: int  # its position in compress.steps, for error messages
    source: Compressed  # what it compresses; never modified
    out: Path  # its output directory (created, empty)
    location: str  # ``out`` relative to the run directory, for the manifest
    train_data: Callable[[], Any]  # () -> (train Encoded, val Encoded | None), loaded on demand
    finetune: Any  # how the task encodes and predicts (a FinetuneConfig)
    seed: int = 0

    @property
    def where(self) -> str:
        """``compress.steps.2 (prune)``: how messages name this step."""
        return f"compress.steps.{self.index} ({self.step.method})"

    def fail(self, field: str, message: str) -> LmforgeError:
        return LmforgeError(f"{self.where}.{field}: {message}")

    def save(self, fmt: Format, processor: Any, /, **settings: Any) -> Compressed:
        """Finish ``out`` once the method has written its weights there: the tokenizer or
        processor, then the manifest recording this step (its method and ``settings``)."""
        processor.save_pretrained(self.out)
        return save_compressed(
            self.out, self.source, fmt, self.location, method=self.step.method, **settings
        )


@dataclass(frozen=True)
class Method:
    """A compression method: the tasks it supports and ``run(step_run) -> (artefact, facts)``."""

    name: str
    tasks: tuple[str, ...]  # tasks whose models it compresses; checked before any work
    # (step config) -> the input formats that step reads (transformers, onnx, torch-int8)
    formats: Callable[[Any], tuple[str, ...]]
    run: Callable[[StepRun], tuple[Compressed, dict[str, Any]]]
    # (step config, task name) -> None or raise ValueError: limits of one setting
    check: Callable[[Any, str], None] | None = None


METHODS: Registry[Method] = Registry("compression method")


def load_methods() -> Registry[Method]:
    """The registry with every built-in method registered (imports their modules)."""
    from lmforge.compress import distill, export, prune, quantize  # noqa: F401

    return METHODS
