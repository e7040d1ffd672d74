"""What a fine-tuning task is: its data checks, model head, encoding, predictions and metrics.

Adding a task is adding one module in this package that calls ``TASKS.add`` (and importing it
in ``__init__``). The finetune stage drives every task through the same steps::

    info = task.prepare(splits)                       # labels/vocab; rejects bad rows by index
    processor = task.load_processor(model_dir)        # tokenizer or image processor
    model = task.load_model(model_dir, info)          # AutoModelFor<head>.from_pretrained
    opts = TaskOptions.of(finetune_config)            # max length, batch size, ...
    enc = task.encode(processor, docs, info, opts, split)  # -> Encoded
    fit(model, enc["train"], enc["val"])              # batches: enc.batch(idx) incl. "labels"
    preds = task.predict(model, enc["test"], processor, info, opts)  # one per test example
    scores = task.metrics(enc["test"].references, preds, info)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.core.registry import Registry
from lmforge.data.document import Document

if TYPE_CHECKING:
    import torch

Splits = dict[str, list[Document]]  # "train", "val", "test" (val/test may be empty)


@dataclass
class Encoded:
    """A split turned into model inputs.

    ``features`` are what the model trains on, ``references`` what predictions are scored
    against: one per example. They differ in length when an example yields several features
    (extractive QA's sliding windows); such tasks keep the example index in each feature.
    """

    features: list[dict[str, Any]]
    references: list[Any]
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]  # -> batch incl. labels
    truncated: int = 0  # examples cut by max_length
    warnings: dict[str, int] = field(default_factory=dict)  # counted, already logged
    truncation: str = "examples are longer than max_length and were truncated"  # for the log

    def __len__(self) -> int:
        return len(self.features)

    def batch(self, idx: list[int]) -> dict[str, torch.Tensor]:
        return self.collate([self.features[i] for i in idx])


def load_tokenizer(path: Path) -> Any:
    """The model's tokenizer; decoders without a pad token pad with EOS (as GPT-2 heads do)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def pad_sequences(rows: list[list[int]], value: int) -> torch.Tensor:
    """Right-pad integer lists to one (N, max_len) long tensor."""
    import torch

    out = torch.full((len(rows), max((len(r) for r in rows), default=0)), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


@dataclass(frozen=True)
class TaskOptions:
    """What a task's ``encode`` and ``predict`` read: a few numbers, not the whole fine-tuning
    config, so evaluate, serve, compress and explain call tasks without inventing one."""

    max_length: int = 128  # tokens per example (longer inputs are truncated and counted)
    batch_size: int = 16  # examples per training step; prediction uses twice as many
    doc_stride: int | None = None  # extractive QA: tokens shared by neighbouring windows
    generation_max_tokens: int = 64  # generation tasks: most new tokens per example
    virtual_tokens: int = 0  # prompt tuning: soft-prompt positions the model prepends

    @classmethod
    def of(cls, cfg: Any) -> TaskOptions:
        """The options of a ``FinetuneConfig`` (or of anything with its fields)."""
        if isinstance(cfg, TaskOptions):
            return cfg
        prompt = getattr(cfg, "method", None) == "prompt"
        return cls(
            max_length=cfg.max_length,
            batch_size=cfg.batch_size,
            doc_stride=cfg.doc_stride,
            generation_max_tokens=cfg.generation_max_tokens,
            virtual_tokens=cfg.method_config.num_virtual_tokens if prompt else 0,
        )

    @property
    def text_length(self) -> int:
        """Tokens of text per sequence: peft's prompt tuning prepends its virtual tokens to
        the input, and they take positions in the model's table too."""
        return self.max_length - self.virtual_tokens


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    # peft TaskType name: SEQ_CLS, TOKEN_CLS, QUESTION_ANS, CAUSAL_LM, SEQ_2_SEQ_LM, or
    # IMAGE_CLS for heads peft has no type for (see finetune.methods.peft_task_type)
    peft_task: str
    # (splits) -> task info (labels, ...); raises DataError naming rows and fields. Annotate
    # its return type: that dataclass is the label space a model's lmforge.json stores as JSON
    prepare: Callable[[Splits], Any]
    # (model_dir, info, *, trust_remote_code=False, for_inference=False) -> model with this
    # task's head (tasks.heads.load_head); LmforgeError if the architecture cannot
    load_model: Callable[..., Any]
    # (processor, docs, info, options, split name) -> Encoded; options: TaskOptions (or a
    # FinetuneConfig, read through TaskOptions.of)
    encode: Callable[..., Encoded]
    # (model, encoded, processor, info, options) -> one prediction per example
    predict: Callable[..., list[Any]]
    # (references, predictions, info) -> metrics (numbers at the top level go to summary.json)
    metrics: Callable[[list[Any], list[Any], Any], dict[str, Any]]
    # (model_dir) -> tokenizer or image processor
    load_processor: Callable[[Path], Any] = load_tokenizer
    # from-scratch starting points this task accepts as finetune.model.preset
    presets: tuple[str, ...] = ()
    # (preset, info, tokenizer_dir or None) -> (model, processor), freshly initialised; None:
    # an encoder preset with this task's head (see ``build_from_preset``)
    from_preset: Callable[[str, Any, Path | None], tuple[Any, Any]] | None = None
    preset_uses_tokenizer: bool = True  # text presets are sized to the run's tokenizer
    # (splits, info) -> a classic baseline's test metrics, trained on the same train split
    baseline: Callable[[Splits, Any], dict[str, Any]] | None = None
    # (scores, info, out_dir, title) -> {artifact name: file name} (plots)
    report: Callable[[dict[str, Any], Any, Path, str], dict[str, str]] | None = None
    # the metric a user reads first (the baseline ratio and the few-shot curve use it)
    main_metric: str = "accuracy"

    def build_from_preset(self, preset: str, info: Any, tokenizer_dir: Path | None) -> tuple:
        """(model, processor) freshly initialised from ``preset``: the task's own builder, or
        an encoder preset saved and reloaded with this task's head (``load_model``)."""
        if self.from_preset is not None:
            return self.from_preset(preset, info, tokenizer_dir)
        from lmforge.tasks.heads import encoder_from_preset

        return encoder_from_preset(preset, tokenizer_dir, lambda p: self.load_model(p, info))


TASKS: Registry[Task] = Registry("fine-tuning task")
