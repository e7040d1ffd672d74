"""Tiny recipes for pretraining tests: 1-layer models on 120 BBC articles."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY_GPT = {
    "preset": "gpt-tiny",
    "layers": 1,
    "heads": 2,
    "hidden": 32,
    "intermediate": 64,
    "context": 64,
}
TINY_BERT = {
    "preset": "bert-tiny",
    "layers": 1,
    "heads": 2,
    "hidden": 32,
    "intermediate": 64,
    "context": 64,
}


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


def pretrain_section(**kw) -> dict:
    section = {
        "model": TINY_GPT,
        "objective": "clm",
        "block_size": 32,
        "batch_size": 4,
        "max_steps": 12,
        "warmup_steps": 2,
        "eval_every": 6,
        "eval_batches": 2,
        "checkpoint_every": 3,
        "tensorboard": False,
    }
    section.update(kw)
    return section


def write_recipe(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path
