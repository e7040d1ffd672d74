"""``ModelSpec``: which model a stage starts from, a preset to build or a directory to load."""

from __future__ import annotations

from pydantic import Field, model_validator

from lmforge.core.schema import FractionCO, PositiveInt, StrictModel


class ModelSpec(StrictModel):
    """Which model to train: a named preset from scratch, or a local model to continue."""

    preset: str | None = Field(
        None,
        description="Architecture preset trained from scratch (gpt-tiny, gpt-small, llama-tiny, llama-small, bert-tiny, bert-small).",
    )
    path: str | None = Field(
        None,
        description="Continue pretraining a local Hugging Face model directory, or a built-in model "
        "(smollm2-135m, minilm-l6).",
    )
    layers: PositiveInt | None = Field(None, description="Override the preset's number of layers.")
    heads: PositiveInt | None = Field(None, description="Override the preset's attention heads.")
    hidden: PositiveInt | None = Field(None, description="Override the preset's hidden size.")
    intermediate: PositiveInt | None = Field(None, description="Override the preset's MLP size.")
    context: PositiveInt | None = Field(None, description="Override the maximum sequence length.")
    dropout: FractionCO | None = Field(None, description="Override dropout probabilities.")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if self.preset is not None and self.path is not None:
            raise ValueError("give 'preset' (train from scratch) or 'path' (continue), not both")
        if self.preset is None and self.path is None:
            self.preset = "gpt-tiny"
        if self.preset is not None:
            from lmforge.models import PRESETS

            if self.preset not in PRESETS:
                raise ValueError(PRESETS.unknown_message(self.preset))
        else:
            from lmforge.models import check_model_path

            check_model_path(self.path)
        if self.path is not None and any(
            v is not None
            for v in (self.layers, self.heads, self.hidden, self.intermediate, self.context)
        ):
            raise ValueError(
                "size overrides apply to presets only; a model from 'path' keeps its shape"
            )
        if self.hidden is not None and self.heads is not None and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self
