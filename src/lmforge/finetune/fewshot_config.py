"""Typed schema of ``finetune.fewshot``: zero-shot and few-shot classification settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from lmforge.core.schema import PositiveInt, StrictModel
from lmforge.finetune.methods import METHODS

if TYPE_CHECKING:
    from lmforge.finetune.config import FinetuneConfig

# methods that score labels without training (registered in finetune.methods.METHODS)
INFERENCE_METHODS = tuple(name for name in METHODS.names() if not METHODS.get(name).trains)
ModelKind = Literal["encoder", "decoder"]


class CurveMethod(StrictModel):
    """One line of the few-shot curve: a method and the model it starts from."""

    method: str = Field(
        description="in-context (k demonstrations, no training; k=0 is zero-shot) or a "
        "training method (lora, full, ...) fine-tuned on the k-shot sample."
    )
    model: str | None = Field(
        None, description="Model directory or built-in name; default: finetune.model.path."
    )

    @model_validator(mode="after")
    def _known(self) -> CurveMethod:
        if self.method == "zero-shot":
            raise ValueError("zero-shot is the in-context method at k=0: use 'in-context'")
        if self.method not in METHODS:
            raise ValueError(METHODS.unknown_message(self.method))
        if self.model is not None:
            from lmforge.models import check_model_ref

            check_model_ref(self.model)
        return self


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
    curve_methods: list[str | CurveMethod] | None = Field(
        None,
        description="Methods of the curve: names (in-context, lora, ...) using finetune.model, "
        "or {method, model} pairs; default: finetune.method.",
    )
    zero_shot: Literal["auto", "embedding", "likelihood"] = Field(
        "auto",
        description="embedding: similarity to label descriptions (encoders); likelihood: label "
        "log-likelihood under a causal LM (decoders); auto picks by architecture.",
    )
    label_descriptions: dict[str, str] | None = Field(
        None, description="Text embedded for each label (default: description_template)."
    )
    description_template: str = Field(
        "{label}",
        description="Description of a label without one in label_descriptions, e.g. "
        "'a news article about {label}'.",
    )
    description_weight: float = Field(
        1.0,
        ge=0,
        description="Embedding few-shot (prototypes): the description counts as this many "
        "examples in its class centroid.",
    )
    verbalizers: dict[str, str] | None = Field(
        None, description="Word(s) a causal LM scores for each label (default: the label name)."
    )
    template: str = Field(
        "Text: {text}\nLabel: {label}",
        description="Prompt of one example for likelihood / in-context scoring.",
    )
    score: Literal["mean", "sum"] = Field(
        "mean", description="Likelihood: mean or sum of the verbalizer tokens' log-probabilities."
    )
    calibrate: bool = Field(
        False,
        description="Likelihood: subtract each label's score for the content-free text 'N/A' "
        "(contextual calibration, Zhao et al. 2021).",
    )
    query_tokens: PositiveInt | None = Field(
        None,
        description="Likelihood: tokens kept of each test text (default: finetune.max_length); "
        "fewer make in-context scoring cheaper.",
    )
    demo_tokens: PositiveInt = Field(
        32,
        description="In-context: tokens kept of each demonstration text (fewer when the "
        "prompt would not fit the model's context; logged).",
    )
    min_steps: PositiveInt = Field(
        50, description="k-shot fine-tuning: train at least this many steps (more epochs)."
    )
    max_test: PositiveInt | None = Field(
        None, description="Score at most this many test examples (decoder scoring is slow)."
    )

    @field_validator("curve")
    @classmethod
    def _curve(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(k < 0 for k in v)):
            raise ValueError("give k values >= 0, e.g. [0, 1, 4, 16, 64]")
        return None if v is None else sorted(set(v))

    @field_validator("curve_methods")
    @classmethod
    def _named(cls, v: list[str | CurveMethod] | None) -> list[str | CurveMethod] | None:
        return (
            None if v is None else [CurveMethod(method=m) if isinstance(m, str) else m for m in v]
        )

    @model_validator(mode="after")
    def _check(self) -> FewShotConfig:
        text, label = self.template.find("{text}"), self.template.find("{label}")
        if text < 0 or label < text or self.template.count("{label}") != 1:
            raise ValueError(
                "template must contain {text} and, after it, {label} once "
                f"(got {self.template!r})"
            )
        if self.curve_methods is not None and not self.curve:
            raise ValueError("curve_methods needs curve (the k values to run)")
        return self

    def methods(self, default_method: str) -> list[CurveMethod]:
        """The curve's methods (default: finetune.method, zero-shot read as in-context)."""
        if not self.curve_methods:
            method = "in-context" if default_method == "zero-shot" else default_method
            return [CurveMethod(method=method)]
        return [
            m if isinstance(m, CurveMethod) else CurveMethod(method=m) for m in self.curve_methods
        ]


def builtin_kind(path: str) -> ModelKind | None:
    """encoder / decoder of a built-in model or a model directory, read cheaply (no torch);
    None when unknown ('pretrain', or a config without ``architectures``)."""
    from lmforge.models.builtin import BUILTIN_MODELS

    if path in BUILTIN_MODELS:
        return BUILTIN_MODELS.get(path).kind
    config = Path(path).expanduser() / "config.json"
    if not config.is_file():
        return None
    raw = json.loads(config.read_text(encoding="utf-8"))
    return kind_of_architectures(raw.get("architectures") or [], bool(raw.get("is_decoder")))


def kind_of_architectures(architectures: list[str], is_decoder: bool = False) -> ModelKind | None:
    """Causal-LM class names (``*ForCausalLM``, GPT-2's ``*LMHeadModel``) mean a decoder."""
    if not architectures:
        return None
    if is_decoder or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "decoder"
    return "encoder"


def scorer_kind(zero_shot: str, model_kind: ModelKind | None, where: str) -> str:
    """embedding or likelihood for a model of ``model_kind``; a clear error when they clash.

    Raises:
        ValueError: fewshot.zero_shot asks for what the model cannot do.
    """
    if zero_shot == "auto":
        return "likelihood" if model_kind == "decoder" else "embedding"
    need: ModelKind = "encoder" if zero_shot == "embedding" else "decoder"
    if model_kind is not None and model_kind != need:
        what = "sentence embeddings" if need == "encoder" else "label log-likelihoods"
        example = "minilm-l6" if need == "encoder" else "smollm2-135m"
        a_need = "an encoder" if need == "encoder" else "a decoder"
        raise ValueError(
            f"fewshot.zero_shot={zero_shot!r} needs {a_need} ({what}), but {where} is "
            f"{'an encoder' if model_kind == 'encoder' else 'a decoder'}; use {a_need} such as "
            f"{example}, or set fewshot.zero_shot: auto"
        )
    return zero_shot


def check_fewshot(cfg: FinetuneConfig) -> None:
    """Recipe-time checks of a zero-/few-shot finetune section (before any work).

    Raises:
        ValueError: an impossible combination, naming the fields to change.
    """
    few = cfg.fewshot or FewShotConfig()
    scoring = cfg.method in INFERENCE_METHODS or bool(few.curve)
    if not (scoring or few.shots):
        return
    if cfg.task != "classification":
        raise ValueError(
            f"zero-/few-shot and k-shot sampling are for classification, not {cfg.task!r} "
            "(finetune.task)"
        )
    if not scoring:
        return  # k-shot fine-tuning: the normal training path
    if cfg.method == "zero-shot" and few.shots and not few.curve:
        raise ValueError(
            "finetune.method zero-shot uses no examples; for fewshot.shots > 0 use in-context"
        )
    if cfg.model.preset is not None:
        raise ValueError(
            "zero-/few-shot scoring needs a pretrained model: set finetune.model.path, "
            "not finetune.model.preset"
        )
    entries = few.methods(cfg.method) if few.curve else [CurveMethod(method="in-context")]
    for entry in entries:
        if entry.method == "in-context":
            path = entry.model or cfg.model.path
            assert path is not None
            where = (
                f"fewshot.curve_methods model {path!r}"
                if entry.model
                else f"finetune.model.path ({path!r})"
            )
            scorer_kind(few.zero_shot, builtin_kind(path), where)
