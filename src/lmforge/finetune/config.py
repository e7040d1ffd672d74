"""Typed schema of the recipe's ``finetune`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lmforge.core.schema import (
    Device,
    Encoding,
    ExistingPath,
    FractionCO,
    LearningRate,
    PositiveInt,
    StrictModel,
)
from lmforge.finetune.fewshot_config import FewShotConfig, check_fewshot
from lmforge.finetune.methods import MethodConfig

UNMERGEABLE = ("prefix", "prompt", "adapter")  # no linear update to fold into the weights


class FinetuneModel(StrictModel):
    """The starting point: a local/built-in model, the run's own pretrained model, or a preset."""

    path: str | None = Field(
        None,
        description="A Hugging Face model directory, a built-in model (minilm-l6, smollm2-135m), "
        "or 'pretrain' for this run's pretrained model.",
    )
    preset: str | None = Field(
        None,
        description="Train this architecture from scratch instead (the task lists its presets, "
        "e.g. bert-tiny, vit-tiny, t5-tiny); text presets use this run's tokenizer.",
    )
    trust_remote_code: bool = Field(
        False,
        description="Run the Python code a model directory names in its config.json (auto_map) "
        "to build the model. Never implied: set it only for a directory whose code you have "
        "read and trust (lmforge's own bottleneck adapters need no code from the directory).",
    )

    @model_validator(mode="after")
    def _check(self) -> FinetuneModel:
        if (self.path is None) == (self.preset is None):
            raise ValueError(
                "give model.path (a directory, minilm-l6, smollm2-135m or 'pretrain') "
                "or model.preset, not both"
            )
        if self.path is not None:
            from lmforge.models import check_model_ref

            check_model_ref(self.path)
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
    text_column: str = Field(
        "text",
        description="Column holding the input: text, a token list (NER), the context (QA), "
        "the source sentence (translation) or the instruction.",
    )
    label_column: str = Field(
        "label",
        description="Column holding the label: class (classification), BIO tags (NER), answer "
        "(QA), target text (translation), response (instruction).",
    )
    question_column: str = Field("question", description="Extractive QA: the question column.")
    encoding: Encoding = Field(
        "utf-8",
        description="Text encoding of the train/val/test files (utf-8, gbk, big5, ...); "
        "undecodable bytes are replaced with U+FFFD, counted and reported, and a label "
        "holding one stops the run (distinct labels could have merged).",
    )
    source: str | None = Field(
        None,
        description="Use only the data stage's documents from this source (a built-in dataset "
        "name, or a file's name), e.g. the NER paragraphs of a recipe that pretrains on more.",
    )
    limit: PositiveInt | None = Field(
        None, description="Use at most this many training rows (a seeded random sample)."
    )


class FinetuneConfig(StrictModel):
    """Fine-tune a model on a task with a full or parameter-efficient method."""

    task: str = Field(
        "classification",
        description="classification, token-classification, extractive-qa, instruction, "
        "translation or image-classification.",
    )
    method: str = Field(
        "lora",
        description="full, linear-probe, lora, adalora, ia3, prefix, prompt, adapter; or, "
        "without training, zero-shot / in-context (see fewshot).",
    )
    head: Literal["softmax", "crf"] = Field(
        "softmax",
        description="token-classification: the output layer. softmax: a per-token classifier "
        "(decoded under the tagging scheme's constraints); crf: BERT-CRF, a linear-chain CRF over "
        "the classifier's scores, trained with its log-likelihood and Viterbi-decoded (its "
        "transitions save beside the model in crf.safetensors).",
    )
    method_config: MethodConfig = Field(
        default_factory=MethodConfig, description="Method hyperparameters."
    )
    model: FinetuneModel = Field(
        default_factory=lambda: FinetuneModel(path="minilm-l6"), description="Starting model."
    )
    data: FinetuneData = Field(default_factory=FinetuneData, description="Labelled data.")
    epochs: PositiveInt = Field(3, description="Passes over the training data.")
    lr: LearningRate = Field(
        1e-3, description="Peak learning rate, in (0, 1] (linear warm-up and decay)."
    )
    batch_size: PositiveInt = Field(16, description="Examples per step.")
    max_length: PositiveInt = Field(
        128, description="Tokens per example; longer texts are truncated and counted."
    )
    doc_stride: PositiveInt | None = Field(
        None,
        description="Extractive QA: context tokens shared by consecutive windows of a long "
        "context (default max_length // 4).",
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_ratio: FractionCO = Field(0.1, description="Share of steps spent warming up.")
    merge: bool = Field(
        False, description="Also save a merged model (LoRA/IA3) that plain transformers loads."
    )
    generation_max_tokens: PositiveInt = Field(
        64, description="Instruction / translation: most new tokens generated per test example."
    )
    fewshot: FewShotConfig | None = Field(
        None, description="Zero-shot and few-shot classification: shots, curve, prompts."
    )
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="Training precision: fp32, bf16 (autocast; weights and AdamW states stay "
        "fp32) or auto (whichever this machine runs faster, timed on the model's shape). "
        "Prediction and scoring run in fp32.",
    )
    group_by_length: bool = Field(
        False,
        description="Batch training examples of similar length together (shuffled in groups "
        "of 50 batches), so batches carry less padding: faster epochs for texts of very "
        "different lengths (translation pairs, NER paragraphs).",
    )
    keep_best: bool = Field(
        False,
        description="End with the weights of the epoch with the lowest validation loss "
        "(transformers' load_best_model_at_end) instead of the last epoch's: guards a small "
        "labelled set against overfitting in the last epochs. Needs a val split.",
    )
    device: Device = Field(
        "auto", description="Where to train and predict: auto (a CUDA GPU if any), cpu, cuda."
    )
    augment: Literal["char", "zh-char"] | None = Field(
        None,
        description="Adversarial data augmentation (classification): add perturbed copies of "
        "a share of the training texts - char: swaps, deletions, keyboard typos, homoglyphs; "
        "zh-char: Chinese homophones (the explain stage's attacks, random edits).",
    )
    augment_share: float = Field(
        0.5, gt=0, le=1, description="Share of the training texts that get a perturbed copy."
    )

    @model_validator(mode="after")
    def _known(self) -> FinetuneConfig:
        from lmforge.finetune.methods import METHODS
        from lmforge.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(TASKS.unknown_message(self.task))
        if self.method not in METHODS:
            raise ValueError(METHODS.unknown_message(self.method))
        if self.merge and self.method in UNMERGEABLE:
            raise ValueError(
                f"merge: {self.method!r} adds virtual tokens or modules that have no place in the "
                "base weights, so it cannot be merged; set merge: false or use lora/adalora/ia3"
            )
        task = TASKS.get(self.task)
        if self.model.preset is not None and self.model.preset not in task.presets:
            raise ValueError(
                f"model.preset: {self.model.preset!r} is not a preset of the {self.task!r} task; "
                f"it has: {', '.join(task.presets) or 'none (give model.path)'}"
            )
        if self.doc_stride is not None and self.doc_stride > self.max_length // 2 - 8:
            raise ValueError(
                f"doc_stride: {self.doc_stride} must be at most max_length // 2 - 8 = "
                f"{self.max_length // 2 - 8} (a window also holds the question, up to half)"
            )
        if self.augment is not None and self.task != "classification":
            raise ValueError(
                f"augment: adversarial augmentation perturbs classification texts; the task is "
                f"{self.task!r} (drop finetune.augment)"
            )
        if self.head == "crf" and self.task != "token-classification":
            raise ValueError(
                f"head: a CRF tags token sequences; the task is {self.task!r} "
                "(use head: crf with task: token-classification, or drop finetune.head)"
            )
        check_fewshot(self)
        return self
