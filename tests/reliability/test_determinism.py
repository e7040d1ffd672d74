"""A recipe and a seed give the same numbers on the same machine: two tiny sentiment-zh runs
(data, WordPiece tokenizer, MLM pretraining in bf16, fine-tuning, baselines) agree bit for bit,
and the WordPiece trainer's hash order no longer leaks into the vocabulary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import E2E_OVERRIDES
from safetensors.torch import load_file

from lmforge.cli import main
from lmforge.data.builtin import load_builtin
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.train import train_tokenizer

TIMING = re.compile(r"second|per_s|flops|mfu|latency|rss")


def test_wordpiece_training_gives_the_same_vocabulary_every_time():
    """tokenizers 0.23 numbers the ## alphabet in Rust HashMap order and breaks ties between
    equally frequent merges by those ids: five trainings on 100 BBC articles gave five
    different vocabularies (tokens, not only ids) before lmforge fixed the order."""
    texts = [d.text for d in load_builtin("bbc-news", limit=100)]
    cfg = TokenizerConfig(kind="wordpiece", vocab_size=1000)
    files = {train_tokenizer(cfg, texts).to_str() for _ in range(5)}
    assert len(files) == 1
    raw = json.loads(files.pop())
    vocab = raw["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(len(vocab)))  # ids stay dense
    assert "##s" in vocab and len(vocab) == 1000
    # only the real special tokens are added tokens: "##s" in a text is ordinary text
    assert [t["content"] for t in raw["added_tokens"]] == list(cfg.resolved_specials().values())


def numbers(summary: dict) -> dict[str, object]:
    """Every metric of every stage but the clock's (seconds, throughput, MFU)."""
    return {
        f"{stage}.{key}": value
        for stage, s in summary["stages"].items()
        for key, value in s["metrics"].items()
        if not TIMING.search(key) and key != "history"
    }


def run(out: Path) -> dict:
    smaller = ["data.sources.0.limit=120", "data.sources.1.limit=60", "pretrain.max_steps=2"]
    sets = [arg for kv in [*E2E_OVERRIDES["sentiment-zh"], *smaller] for arg in ("--set", kv)]
    assert main(["run", "sentiment-zh", "--out", str(out), "--no-cache", *sets]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_two_identical_tiny_runs_give_identical_numbers_and_weights(tmp_path):
    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert numbers(first) == numbers(second)
    assert "finetune.accuracy" in numbers(first)
    for model in ("pretrain/model", "finetune/model"):
        a = load_file(tmp_path / "a" / model / "model.safetensors")
        b = load_file(tmp_path / "b" / model / "model.safetensors")
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), model
    for name in ("tokenizer/tokenizer.json", "finetune/predictions.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
