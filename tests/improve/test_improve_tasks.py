"""``lmforge improve`` for NER, extractive QA and translation: the corrections users send
(in each route's answer shape) reach the next fine-tune's data, and before/after is printed."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import local_encoder, trained_tokenizer

from lmforge.cli import main
from lmforge.data.builtin import load_builtin
from lmforge.serve.feedback import FeedbackStore
from lmforge.serve.runners import entities, words


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def ner_case(tmp):
    docs = [d for d in load_builtin("peoples-daily-ner", limit=300) if len(d.tokens) <= 60]
    docs = [d for d in docs if [w for w, _, _ in words(d.text)] == d.tokens]  # one word a char
    rows = [{"tokens": d.tokens, "tags": d.tags} for d in docs]
    base = local_encoder(tmp / "base", [d.text for d in docs])
    data = {"train": write_jsonl(tmp / "train.jsonl", rows[:40]),
            "test": write_jsonl(tmp / "test.jsonl", rows[40:50]),
            "text_column": "tokens", "label_column": "tags"}  # fmt: skip
    section = {"task": "token-classification", "method": "full", "model": {"path": str(base)}}
    corrections = [  # what /v1/ner answered for the text, corrected: entities with offsets
        ("/v1/ner", [d.text], entities(d.text, words(d.text), d.tags)) for d in docs[50:60]
    ]
    return section | {"data": data}, corrections, "f1"


def qa_case(tmp):
    docs = load_builtin("wiki-qa", limit=18)
    rows = [{"context": d.text, "question": d.question,
             "answer": {"text": d.label, "answer_start": d.answer_start}} for d in docs]  # fmt: skip
    base = local_encoder(tmp / "base", [d.text for d in docs] + [d.question for d in docs])
    data = {"train": write_jsonl(tmp / "train.jsonl", rows[:8]),
            "test": write_jsonl(tmp / "test.jsonl", rows[8:12]),
            "text_column": "context", "question_column": "question",
            "label_column": "answer"}  # fmt: skip
    section = {"task": "extractive-qa", "method": "full", "model": {"path": str(base)}}
    corrections = [
        ("/v1/qa", {"question": d.question, "context": d.text},
         {"answer": d.label, "start": d.answer_start})
        for d in docs[12:18]
    ]  # fmt: skip
    return section | {"data": data}, corrections, "f1"


def translation_case(tmp):
    from lmforge.tasks import TASKS
    from lmforge.tasks.translation import PairInfo

    docs = load_builtin("hk-parallel", limit=40)
    rows = [{"zh": d.text, "en": d.label} for d in docs]
    tok = tmp / "tok"
    trained_tokenizer([d.text for d in docs] + [d.label for d in docs], "bpe", 600, 64
                      ).save_pretrained(tok)  # fmt: skip
    model, tokenizer = TASKS.get("translation").from_preset("t5-tiny", PairInfo("en"), tok)
    base = tmp / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = {"train": write_jsonl(tmp / "train.jsonl", rows[:16]),
            "test": write_jsonl(tmp / "test.jsonl", rows[16:20]),
            "text_column": "zh", "label_column": "en"}  # fmt: skip
    section = {"task": "translation", "method": "full", "model": {"path": str(base)},
               "generation_max_tokens": 8, "batch_size": 32}  # fmt: skip
    corrections = [("/v1/translate", [d.text], d.label) for d in docs[20:24]]
    return section | {"data": data}, corrections, "bleu"


CASES = {
    "token-classification": ner_case,
    "extractive-qa": qa_case,
    "translation": translation_case,
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_corrections_reach_the_next_fine_tune_and_before_after_is_printed(task, tmp_path, capsys):
    section, corrections, metric = CASES[task](tmp_path)
    recipe = {"name": "ft", "finetune": {"epochs": 1, "max_length": 64, **section}}
    recipe["finetune"]["data"] = {k: str(v) for k, v in recipe["finetune"]["data"].items()}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True))
    root = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(root)]) == 0
    store = FeedbackStore(root / "serve" / "feedback.sqlite", log_inputs=True)
    for i, (route, inputs, correction) in enumerate(corrections):
        store.log_response(f"r{i}", "ft", route, inputs, None)  # served with --log-inputs
        store.add_feedback(f"r{i}", 2, correction, None)
    store.close()
    capsys.readouterr()

    assert main(["improve", str(root)]) == 0
    printed = capsys.readouterr().out
    assert f"corrections: {len(corrections)}" in printed
    assert any(line.split()[:1] == [metric] and "->" in line for line in printed.splitlines())
    entry = json.loads((root / "summary.json").read_text())["stages"]["improve"]["metrics"]
    assert entry["corrections"] == len(corrections) and metric in entry["after"]
    assert set(entry["before"]) == set(entry["after"])
    trained = [json.loads(x) for x in (root / "improve" / "train.jsonl").read_text().splitlines()]
    fine = json.loads((root / "summary.json").read_text())["stages"]["finetune"]
    assert fine["improved"] and fine["metrics"]["train_examples"] == len(trained)
    added = trained[-len(corrections) :]  # the corrections, after the train split
    if task == "token-classification":
        first = corrections[0][1][0]
        assert "".join(added[0]["tokens"]) == first and any(t != "O" for a in added
                                                             for t in a["tags"])  # fmt: skip
    elif task == "extractive-qa":
        assert [a["answer"]["text"] for a in added] == [c[2]["answer"] for c in corrections]
        assert [a["answer"]["answer_start"] for a in added] == [c[2]["start"] for c in corrections]
    else:
        assert [(a["zh"], a["en"]) for a in added] == [(c[1][0], c[2]) for c in corrections]
