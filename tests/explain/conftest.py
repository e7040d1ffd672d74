"""A tiny keyword classifier saved as the finetune stage saves one (weights, tokenizer,
lmforge.json), trained in seconds: class ``sport`` has a sport word in the text,
``business`` a business word, ``other`` neither (all share the filler). So a faithful
explanation of sport/business must point at the keyword, and an attack must hide or replace
it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

SPORT = ["football", "goal", "match", "striker", "league"]
BUSINESS = ["market", "shares", "profit", "bank", "economy"]
FILLER = [
    "the",
    "a",
    "of",
    "on",
    "in",
    "today",
    "said",
    "people",
    "new",
    "year",
    "time",
    "week",
    "city",
    "report",
]


# Chinese: a praise or a complaint character in neutral filler (``other``: neither). Every
# keyword has look-alikes and homophones among the attacks' candidates.
PRAISE = ["好", "棒", "优", "赞", "快"]
COMPLAINT = ["坏", "差", "烂", "糟", "恨"]
FILLER_ZH = list("今天我们在城市里看到新的东西大家都说这个时候")


def zh_keyword_texts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = ("pos", "neg", "other")[i % 3]
        # all texts 9 characters: a length cue lets the model stall at "keyword or not"
        chars = rng.choices(FILLER_ZH, k=9 if label == "other" else 8)
        if label != "other":
            keyword = rng.choice(PRAISE if label == "pos" else COMPLAINT)
            chars.insert(rng.randrange(len(chars) + 1), keyword)
        out.append(("".join(chars), label))
    return out


def keyword_texts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = ("sport", "business", "other")[i % 3]
        words = rng.choices(FILLER, k=9 if label == "other" else 8)  # no length cue
        if label != "other":
            keyword = rng.choice(SPORT if label == "sport" else BUSINESS)
            words.insert(rng.randrange(len(words) + 1), keyword)
        out.append((" ".join(words), label))
    return out


def fixed_tokenizer(texts: list[str]) -> Any:
    """A WordPiece tokenizer whose vocabulary is the letters and every word (characters for
    Chinese) of ``texts``, in sorted order. Trained tokenizers assign ids differently from run
    to run, so the keyword models, and their borderline predictions, differed too."""
    from transformers import BertTokenizerFast

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    units = {u for t in texts for u in (t.lower().split() if " " in t else list(t))}
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
    vocab += sorted(units - set(vocab))
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=64)


def train_keyword_model(path: Path, data: list[tuple[str, str]], labels: list[str]) -> Path:
    """A 2-layer BERT trained on ``data`` (150 steps, one thread), saved as finetune saves;
    the same weights on every run."""
    import torch
    from helpers import tiny_bert

    from lmforge.core.manifest import Manifest, write_manifest

    torch.manual_seed(0)
    tok = fixed_tokenizer([t for t, _ in data])
    model = tiny_bert(vocab_size=len(tok), num_labels=len(labels), num_hidden_layers=2)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {k: i for i, k in enumerate(labels)}
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    for step in range(150):
        batch = data[(step * 16) % len(data) : (step * 16) % len(data) + 16]
        enc = tok([t for t, _ in batch], padding=True, return_tensors="pt")
        y = torch.tensor([labels.index(lab) for _, lab in batch])
        loss = model(**enc, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.set_num_threads(threads)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    write_manifest(
        path,
        Manifest(
            kind="full",
            task="classification",
            method="full",
            info={"labels": labels, "multi_label": False},
            max_length=32,
        ),
    )
    return path


@pytest.fixture(scope="session")
def keyword_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("keyword") / "model"
    return train_keyword_model(path, keyword_texts(240), ["business", "other", "sport"])


@pytest.fixture(scope="session")
def zh_keyword_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("zh-keyword") / "model"
    return train_keyword_model(path, zh_keyword_texts(240), ["neg", "other", "pos"])


@pytest.fixture
def zh_keyword_clf(zh_keyword_model_dir):
    from lmforge.explain.classifier import Classifier
    from lmforge.tasks.artifact import load_artifact

    return Classifier.from_artifact(load_artifact(zh_keyword_model_dir))


@pytest.fixture
def keyword_clf(keyword_model_dir):
    from lmforge.explain.classifier import Classifier
    from lmforge.tasks.artifact import load_artifact

    return Classifier.from_artifact(load_artifact(keyword_model_dir))
