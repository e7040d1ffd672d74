"""Typed schema of ``finetune.fewshot``: zero-shot and few-shot classification settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmforge.core.schema import PositiveInt, StrictModel

# methods that score labels without training (finetune.method)
INFERENCE_METHODS = ("zero-shot", "in-context")


class FewShotConfig(StrictModel):
    """k-shot sampling, prompts and label descriptions for zero-/few-shot classification."""

    shots: int = Field(
        0,
        ge=0,
        description="Examples per class drawn from train (k): in-context examples, "
        "or the k-shot training set of a training method.",
    )
    curve: list[int] | None = Field(
        None, description="Run at each k (e.g. [0, 1, 4, 16, 64]) and plot accuracy vs k."
    )
    zero_shot: Literal["auto", "embedding", "likelihood"] = Field(
        "auto",
        description="embedding: similarity to label descriptions (encoders); likelihood: label "
        "log-likelihood under a causal LM (decoders); auto picks by architecture.",
    )
    label_descriptions: dict[str, str] | None = Field(
        None, description="Text embedded for each label (default: the label name)."
    )
    verbalizers: dict[str, str] | None = Field(
        None, description="Word(s) a causal LM scores for each label (default: the label name)."
    )
    template: str = Field(
        "Text: {text}\nLabel: {label}",
        description="Prompt of one example for likelihood / in-context scoring.",
    )
    max_test: PositiveInt | None = Field(
        None, description="Score at most this many test examples (decoder scoring is slow)."
    )
