"""What a fine-tuning task is: its data encoding, model head, predictions and metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmforge.core.registry import Registry


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    peft_task: str  # peft TaskType name: SEQ_CLS, TOKEN_CLS, QUESTION_ANS, CAUSAL_LM, SEQ_2_SEQ_LM
    load_model: Callable[..., Any]  # (path, label_info) -> transformers model with the head
    encode: Callable[..., Any]  # (tokenizer, documents, label_info, max_length) -> encoded set
    predict: Callable[..., Any]  # (model, encoded, batch_size, device) -> predictions
    metrics: Callable[..., dict[str, Any]]  # (references, predictions, label_info) -> metrics


TASKS: Registry[Task] = Registry("fine-tuning task")
