"""A tiny keyword classifier saved as the finetune stage saves one (weights, tokenizer,
lmforge.json), trained in seconds: class ``sport`` has a sport word in the text,
``business`` a business word, ``other`` neither (all share the filler). So a faithful
explanation of sport/business must point at the keyword, and an attack must hide or replace
it."""

from __future__ import annotations

import random

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


def keyword_texts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = ("sport", "business", "other")[i % 3]
        words = rng.choices(FILLER, k=8)
        if label != "other":
            keyword = rng.choice(SPORT if label == "sport" else BUSINESS)
            words.insert(rng.randrange(len(words) + 1), keyword)
        out.append((" ".join(words), label))
    return out


@pytest.fixture(scope="session")
def keyword_model_dir(tmp_path_factory):
    import torch
    from helpers import tiny_bert, trained_tokenizer

    from lmforge.core.manifest import Manifest, write_manifest

    torch.manual_seed(0)
    data = keyword_texts(240)
    tok = trained_tokenizer([t for t, _ in data] * 3, vocab_size=120)
    labels = ["business", "other", "sport"]
    model = tiny_bert(vocab_size=len(tok), num_labels=3, num_hidden_layers=2)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {k: i for i, k in enumerate(labels)}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    for step in range(90):
        batch = data[(step * 16) % 240 : (step * 16) % 240 + 16]
        enc = tok([t for t, _ in batch], padding=True, return_tensors="pt")
        y = torch.tensor([labels.index(lab) for _, lab in batch])
        loss = model(**enc, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("keyword") / "model"
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


@pytest.fixture
def keyword_clf(keyword_model_dir):
    from lmforge.explain.classifier import Classifier
    from lmforge.tasks.artifact import load_artifact

    return Classifier.from_artifact(load_artifact(keyword_model_dir))
