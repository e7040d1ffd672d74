"""Typed schema of the recipe's ``evaluate`` section."""

from __future__ import annotations

from pydantic import Field, model_validator

from lmforge.core.schema import Device, ExistingPath, PositiveInt, StrictModel


class EvaluateConfig(StrictModel):
    """Score a model on the test split and measure what serving it costs."""

    model: str = Field(
        "finetune",
        description="'finetune' (this run's fine-tuned model: merged/ if saved, else model/), "
        "or a model directory (plain transformers, or a peft adapter whose base exists).",
    )
    test: ExistingPath | None = Field(
        None,
        description="Test file (csv/jsonl/parquet; finetune.data's columns); default: the split "
        "the finetune stage scored.",
    )
    max_examples: PositiveInt | None = Field(
        None, description="Score at most this many test examples."
    )
    latency_batch_sizes: list[PositiveInt] = Field(
        [1, 32], description="Batch sizes whose forward-pass latency is measured."
    )
    latency_repeats: PositiveInt = Field(
        5, description="Timed repeats per batch size (after one warm-up); the median is kept."
    )
    device: Device = Field(
        "auto",
        description="Where to score the model: auto (a CUDA GPU if any), cpu, cuda. Latency and "
        "peak memory are profiled on the CPU (the laptop serving footprint).",
    )
    profile: bool = Field(
        True,
        description="Measure latency and peak RSS in a fresh process (the serving footprint); "
        "false skips it.",
    )

    @model_validator(mode="after")
    def _model(self) -> EvaluateConfig:
        if self.model != "finetune":
            from pathlib import Path

            if (
                not (Path(self.model) / "config.json").exists()
                and not (Path(self.model) / "adapter_config.json").exists()
            ):
                raise ValueError(
                    f"model: {self.model!r} is neither 'finetune' nor a model directory "
                    "(no config.json or adapter_config.json)"
                )
        return self
