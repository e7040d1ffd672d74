"""Tiny recipes for pretraining tests: 1-layer models on 120 BBC articles."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import TINY_GPT, pretrain_section

__all__ = ["TINY_BERT", "TINY_GPT", "base_recipe", "pretrain_section", "write_recipe"]

TINY_BERT = {**TINY_GPT, "preset": "bert-tiny"}


def base_recipe(kind: str) -> dict:
    return {
        "name": f"tiny-{kind}",
        "seed": 0,
        "data": {
            "sources": [{"builtin": "bbc-news", "limit": 120}],
            "split": {"val": 0.1, "test": 0.0},
        },
        "tokenizer": {"kind": kind, "vocab_size": 500},
    }


def write_recipe(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path
