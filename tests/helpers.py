"""Builders shared by the tests: tokenizers trained on real text, tiny models, CSV files.

Import as ``from helpers import ...`` (``tests/`` is on ``sys.path`` through its conftest).
Every model here is a few thousand parameters: built, trained and saved in well under a second.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def trained_tokenizer(
    texts: list[str],
    kind: str = "wordpiece",
    vocab_size: int = 2000,
    max_length: int = 64,
    **tokenizer_config: Any,
) -> Any:
    """A transformers tokenizer trained by lmforge's tokenizer stage code on ``texts``."""
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import to_transformers, train_tokenizer

    cfg = TokenizerConfig(
        kind=kind, vocab_size=vocab_size, model_max_length=max_length, **tokenizer_config
    )
    return to_transformers(train_tokenizer(cfg, texts), cfg)


def tiny_bert_config(vocab_size: int = 100, **overrides: Any) -> Any:
    """A BERT config of 2 layers x 32 wide (override any field, e.g. ``num_labels=3``)."""
    from transformers import BertConfig

    fields: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    }
    return BertConfig(**{**fields, **overrides})


def tiny_bert(head: type | None = None, seed: int = 0, **config: Any) -> Any:
    """A freshly initialised tiny BERT with ``head`` (default: sequence classification)."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return (head or BertForSequenceClassification)(tiny_bert_config(**config))


def local_encoder(path: Path, texts: list[str], vocab_size: int = 2000) -> Path:
    """A model directory as a user would have one: a 1-layer BERT classifier + its tokenizer."""
    trained_tokenizer(texts, vocab_size=vocab_size).save_pretrained(path)
    tiny_bert(vocab_size=vocab_size, num_hidden_layers=1).save_pretrained(path)
    return path


def write_csv(
    path: Path, docs: Iterable[Any], columns: tuple[str, str] = ("body", "topic"), chars: int = 600
) -> Path:
    """Documents as a labelled CSV file (text cut to ``chars``), the way users bring data."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for d in docs:
            w.writerow([d.text[:chars], d.label])
    return path
