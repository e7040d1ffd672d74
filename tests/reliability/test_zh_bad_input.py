"""Odd Chinese input through every Chinese path: traditional characters, full-width
punctuation and digits, emoji, mixed scripts and empty strings pass the language filter, train
and use a tokenizer, and are tagged (softmax and CRF heads) and classified without an error;
an NER row whose tags do not match its tokens is named, with its file."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from helpers import tiny_bert_config, trained_tokenizer
from transformers import BertForSequenceClassification, BertForTokenClassification

from lmforge.cli import main
from lmforge.data.builtin import load_builtin
from lmforge.data.document import Document
from lmforge.data.quality import detect_language, language_reason
from lmforge.finetune.config import FinetuneConfig
from lmforge.tasks import TASKS
from lmforge.tasks.classification import LabelInfo
from lmforge.tasks.crf import CrfTagger
from lmforge.tasks.token_classification import TagInfo

pytestmark = pytest.mark.usefixtures("one_thread")

ODD = [
    "國務院總理李鵬今天會見了外賓。",  # traditional
    "ＡＢＣ公司，成立於２０２４年！（北京）",  # full-width letters, digits, punctuation
    "我爱北京😀天安门🎉👍🏽",  # emoji, one with a skin-tone modifier
    "GPT-4和BERT模型 are both 大模型, 对吧?",  # mixed scripts and spaces
    "　",  # an ideographic space only
    "",  # empty
]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [d.text for d in load_builtin("peoples-daily-ner", limit=200)]
    return trained_tokenizer(texts + ODD, vocab_size=2500, max_length=64)


def test_language_filter_takes_odd_chinese_text(tokenizer):
    for text in ODD:
        detect_language(text)  # no error, whatever it decides
        language_reason(text, ["zh"])
    assert language_reason(ODD[0], ["zh"]) is None and language_reason(ODD[2], ["zh"]) is None
    ids = tokenizer(ODD)["input_ids"]
    assert all(len(row) >= 2 for row in ids)  # [CLS] ... [SEP] even for the empty string


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_ner_tags_every_odd_token(tokenizer, head):
    docs = [Document(t, tokens=list(t), tags=["O"] * len(t)) for t in ODD]
    docs[0].tags[8:10] = ["B-PER", "I-PER"]  # 李鵬
    info = TagInfo(["O", "B-PER", "I-PER"])
    torch.manual_seed(0)
    model = BertForTokenClassification(tiny_bert_config(len(tokenizer), num_labels=3))
    if head == "crf":
        model = CrfTagger(model, info.labels)
    task = TASKS.get("token-classification")
    opts = FinetuneConfig(task="token-classification", head=head, max_length=32)
    enc = task.encode(tokenizer, docs, info, opts, "test")
    preds = task.predict(model, enc, tokenizer, info, opts)
    assert [len(p) for p in preds] == [len(t) for t in ODD]
    assert preds[4] == ["O"] and preds[5] == []  # a space has no sub-token: "O"
    train = task.encode(tokenizer, docs, info, opts, "train")
    assert torch.isfinite(model(**train.batch(list(range(len(train))))).loss)


def test_sentiment_classifies_odd_text(tokenizer):
    task = TASKS.get("classification")
    info = LabelInfo(["neg", "pos"], False)
    docs = [Document(t, label="pos") for t in ODD]
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(len(tokenizer), num_labels=2))
    opts = FinetuneConfig(task="classification", max_length=32)
    enc = task.encode(tokenizer, docs, info, opts, "test")
    assert len(task.predict(model, enc, tokenizer, info, opts)) == len(ODD)


def test_a_tag_count_mismatch_names_the_row_and_its_file(tmp_path, capsys):
    rows = [
        {"tokens": list("新华社北京"), "tags": ["B-ORG", "I-ORG", "I-ORG", "B-LOC", "I-LOC"]},
        {"tokens": list("國務院總理😀"), "tags": ["B-ORG", "I-ORG", "I-ORG", "O", "O", "O"]},
        {"tokens": list("江泽民主席"), "tags": ["B-PER", "I-PER", "I-PER", "O"]},
    ]
    data = tmp_path / "ner.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    recipe = {
        "name": "bad-ner",
        "finetune": {
            "task": "token-classification",
            "method": "full",
            "head": "crf",
            "data": {
                "train": str(data),
                "test": str(data),
                "text_column": "tokens",
                "label_column": "tags",
            },
        },
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), "utf-8")
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "rows [2] (ids ['2'] in ner.jsonl) with (tokens, tags) = [(5, 4)]" in err
    assert "Traceback" not in err
