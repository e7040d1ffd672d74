"""Typed schema of the recipe's ``finetune`` section."""

from __future__ import annotations

from pydantic import Field, model_validator

from lmforge.core.schema import ExistingPath, FractionCO, PositiveInt, StrictModel
from lmforge.finetune.methods import MethodConfig


class FinetuneModel(StrictModel):
    """The starting point: a local/built-in model, the run's own pretrained model, or a preset."""

    path: str | None = Field(
        None,
        description="A Hugging Face model directory, a built-in model (minilm-l6, smollm2-135m), "
        "or 'pretrain' for this run's pretrained model.",
    )

    @model_validator(mode="after")
    def _check(self) -> FinetuneModel:
        if self.path is None:
            raise ValueError("give model.path (a directory, minilm-l6, smollm2-135m or 'pretrain')")
        if self.path != "pretrain":
            from lmforge.models import check_model_path

            check_model_path(self.path)
        return self


class FinetuneData(StrictModel):
    """Labelled data: the data stage's splits by default, or files."""

    train: ExistingPath | None = Field(
        None,
        description="Training file (csv/jsonl/parquet); default: the data stage's train split.",
    )
    val: ExistingPath | None = Field(
        None, description="Validation file; default: the data stage's val split."
    )
    test: ExistingPath | None = Field(
        None, description="Test file; default: the data stage's test split."
    )
    text_column: str = Field("text", description="Column holding the text.")
    label_column: str = Field("label", description="Column holding the label.")
    limit: PositiveInt | None = Field(None, description="Use at most this many training rows.")


class FinetuneConfig(StrictModel):
    """Fine-tune a model on a task with a full or parameter-efficient method."""

    task: str = Field(
        "classification", description="Task (see lmforge.finetune.tasks): classification."
    )
    method: str = Field(
        "lora", description="full, linear-probe, lora, adalora, ia3, prefix or prompt."
    )
    method_config: MethodConfig = Field(
        default_factory=MethodConfig, description="Method hyperparameters."
    )
    model: FinetuneModel = Field(
        default_factory=lambda: FinetuneModel(path="minilm-l6"), description="Starting model."
    )
    data: FinetuneData = Field(default_factory=FinetuneData, description="Labelled data.")
    epochs: PositiveInt = Field(3, description="Passes over the training data.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (linear warm-up and decay).")
    batch_size: PositiveInt = Field(16, description="Examples per step.")
    max_length: PositiveInt = Field(
        128, description="Tokens per example; longer texts are truncated and counted."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_ratio: FractionCO = Field(0.1, description="Share of steps spent warming up.")
    merge: bool = Field(
        False, description="Also save a merged model (LoRA/IA3) that plain transformers loads."
    )

    @model_validator(mode="after")
    def _known(self) -> FinetuneConfig:
        import lmforge.finetune.tasks.classification  # noqa: F401 - registers the task
        from lmforge.finetune.methods import METHODS
        from lmforge.finetune.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(TASKS.unknown_message(self.task))
        if self.method not in METHODS:
            raise ValueError(METHODS.unknown_message(self.method))
        return self
