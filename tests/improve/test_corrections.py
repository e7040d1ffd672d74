"""Corrections of every improvable task -> training rows the recipe's own reader reads back."""

from __future__ import annotations

from lmforge.data.config import SourceConfig
from lmforge.data.sources import LoadStats, load_source
from lmforge.improve.corrections import correction_docs, write_training_file
from lmforge.tasks.classification import LabelInfo
from lmforge.tasks.token_classification import TagInfo

COLUMNS = {"text": "text", "label": "label", "question": "question"}


def read_back(path, task):
    cfg = SourceConfig(
        path=path,
        text_column="text",
        label_column="label",
        question_column="question" if task == "extractive-qa" else None,
        encoding="gbk",  # the file is ASCII: any ASCII-compatible recipe encoding reads it
    )
    return load_source(cfg, LoadStats())


def row(route, inp, correction, rid="r"):
    return {"response_id": rid, "route": route, "input": inp, "correction": correction}


def test_ner_entities_become_word_tags_in_the_models_scheme(tmp_path):
    info = TagInfo(["O", "B-LOC", "B-PER", "I-LOC", "I-PER"])
    rows = [
        row(
            "/v1/ner",
            ["张三在北京工作。"],
            [{"type": "PER", "start": 0, "end": 2}, {"type": "LOC", "start": 3, "end": 5}],
        ),  # fmt: skip
        row("/v1/ner", ["Ann met Bob Lee"], {"entities": [{"type": "PER", "start": 8, "end": 15}]}),
        row("/v1/ner", ["Ann met Bob"], []),  # "no entity here" is a correction too
        row("/v1/ner", ["Ann met Bob"], [{"type": "PER", "start": 9, "end": 11}]),  # mid-word
        row("/v1/ner", ["Ann met Bob"], [{"type": "ORG", "start": 0, "end": 3}]),  # unknown type
        row("/v1/ner", ["a", "b"], []),  # which of two texts?
        row("/v1/classify", ["x"], "a"),
    ]
    docs, skipped = correction_docs(rows, "token-classification", info)
    assert skipped == {"no_input": 1, "unknown_label": 1, "misaligned": 1, "other_route": 1}
    assert docs[0].tokens == list("张三在北京工作。")
    assert docs[0].tags == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O"]
    assert (docs[1].tokens, docs[1].tags) == (["Ann", "met", "Bob", "Lee"],
                                              ["O", "O", "B-PER", "I-PER"])  # fmt: skip
    assert docs[2].tags == ["O", "O", "O"]
    iobes = TagInfo(["O", "B-PER", "E-PER", "I-PER", "S-PER"])
    (one,), _ = correction_docs(rows[1:2], "token-classification", iobes)
    assert one.tags == ["O", "O", "B-PER", "E-PER"]
    back = read_back(write_training_file(tmp_path / "t.jsonl", docs, "token-classification",
                                         COLUMNS), "token-classification")  # fmt: skip
    assert [(d.tokens, d.tags) for d in back] == [(d.tokens, d.tags) for d in docs]
    assert back[0].text == "张三在北京工作。"


def test_qa_answers_are_placed_in_their_context(tmp_path):
    qa = {"question": "Where?", "context": "It is in Paris. Paris is big."}
    rows = [
        row("/v1/qa", qa, "Paris"),  # the first occurrence
        row("/v1/qa", qa, {"answer": "Paris", "start": 16, "end": 21, "score": 0.2}),
        row("/v1/qa", qa, {"answer": "Paris", "start": 3}),  # not there
        row("/v1/qa", qa, "London"),
        row("/v1/qa", "only a text", "Paris"),
    ]
    docs, skipped = correction_docs(rows, "extractive-qa", None)
    assert skipped == {"no_input": 1, "unknown_label": 0, "misaligned": 2, "other_route": 0}
    assert [(d.label, d.answer_start, d.question) for d in docs] == [
        ("Paris", 9, "Where?"), ("Paris", 16, "Where?")]  # fmt: skip
    back = read_back(write_training_file(tmp_path / "t.jsonl", docs, "extractive-qa", COLUMNS),
                     "extractive-qa")  # fmt: skip
    assert [(d.text, d.question, d.label, d.answer_start) for d in back] == [
        (d.text, d.question, d.label, d.answer_start) for d in docs
    ]


def test_translations_and_multi_label_corrections_keep_their_shape(tmp_path):
    docs, skipped = correction_docs(
        [row("/v1/translate", ["你好"], "Hello"), row("/v1/translate", ["你好"], ["Hello"])],
        "translation",
        None,
    )
    assert [(d.text, d.label) for d in docs] == [("你好", "Hello")]
    assert skipped["unknown_label"] == 1
    back = read_back(write_training_file(tmp_path / "t.jsonl", docs, "translation", COLUMNS),
                     "translation")  # fmt: skip
    assert [(d.text, d.label) for d in back] == [("你好", "Hello")]

    multi = LabelInfo(["arts", "science", "sport"], multi_label=True)
    rows = [
        row("/v1/classify", ["a text"], ["science", "sport"]),
        row("/v1/classify", ["b text"], "arts"),  # one label of a multi-label model
        row("/v1/classify", ["c text"], ["science", "cooking"]),
    ]
    docs, skipped = correction_docs(rows, "classification", multi)
    assert [d.label for d in docs] == [["science", "sport"], ["arts"]]
    assert skipped["unknown_label"] == 1
    back = read_back(write_training_file(tmp_path / "m.jsonl", docs, "classification", COLUMNS),
                     "classification")  # fmt: skip
    assert [d.label for d in back] == [["science", "sport"], ["arts"]]  # lists, not '["..."]'
    assert LabelInfo.from_documents(back).multi_label
