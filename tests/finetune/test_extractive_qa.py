"""Extractive QA on wiki-qa: sliding windows, answer positions, bad rows, span decoding, a tiny
model learning, and the sliding-window baseline."""

import logging
from types import SimpleNamespace

import pytest
import torch
from helpers import tiny_bert
from transformers import (
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    BertForQuestionAnswering,
)

from lmforge.core.errors import DataError, LmforgeError
from lmforge.data.builtin import load_builtin
from lmforge.data.document import Document
from lmforge.finetune.config import FinetuneConfig
from lmforge.finetune.methods import MethodConfig, apply_method
from lmforge.finetune.stage import merge_adapter
from lmforge.finetune.train import fit
from lmforge.models import resolve_model_path
from lmforge.tasks import TASKS
from lmforge.tasks.extractive_qa import QAInfo, best_span, sliding_window_answer

TASK = TASKS.get("extractive-qa")
INFO = QAInfo()
MODEL_KEYS = {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}


def cfg(max_length=64, batch_size=8):
    return FinetuneConfig(task="extractive-qa", max_length=max_length, batch_size=batch_size)


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(resolve_model_path("minilm-l6"))


@pytest.fixture(scope="module")
def docs():
    return load_builtin("wiki-qa", limit=300)


def test_windows_cover_long_contexts_and_positions_map_back_to_the_answer(tok, docs):
    enc = TASK.encode(tok, docs, INFO, cfg(64), "train")
    assert len(enc) > len(docs) and enc.warnings["windowed_examples"] > 0
    assert max(len(f["input_ids"]) for f in enc.features) == 64
    found = set()
    for f in enc.features:
        doc = docs[f["example_id"]]
        s, e = f["start_positions"], f["end_positions"]
        if s == 0:  # [CLS]: the answer is not (wholly) in this window
            assert e == 0
            continue
        assert doc.text[f["offsets"][s][0] : f["offsets"][e][1]] == doc.label
        found.add(f["example_id"])
    assert found == set(range(len(docs)))  # every answer is inside at least one window
    windows = [f for f in enc.features if f["example_id"] == enc.features[0]["example_id"]]
    assert len(windows) >= 2  # neighbours share max_length // 4 = 16 context tokens
    spans = [{o for o in w["offsets"] if o is not None} for w in windows]
    assert all(len(a & b) == 16 for a, b in zip(spans, spans[1:], strict=False))
    batch = enc.batch([0, 1, 2])
    assert set(batch) == MODEL_KEYS and batch["input_ids"].shape[0] == 3
    assert enc.references[0] == [docs[0].label]


def test_doc_stride_sets_the_overlap_of_neighbouring_windows(tok, docs):
    enc = TASK.encode(tok, docs[:1], INFO, cfg(64).model_copy(update={"doc_stride": 24}), "test")
    spans = [{o for o in f["offsets"] if o is not None} for f in enc.features]
    assert len(spans) >= 2 and all(len(a & b) == 24 for a, b in zip(spans, spans[1:], strict=False))
    with pytest.raises(ValueError, match="doc_stride: 40 must be at most max_length // 2 - 8 = 24"):
        FinetuneConfig(task="extractive-qa", max_length=64, doc_stride=40)


def test_rows_whose_answer_is_not_in_the_context_are_counted_and_skipped(tok, docs, caplog):
    good = docs[0]
    rows = [
        good,
        Document(good.text, label="no such answer", question=good.question),
        Document(good.text, label=good.label, question="x?", answer_start=good.answer_start + 1),
        Document("in 1900 and again in 1900", label="1900", question="When?"),
    ]
    with caplog.at_level(logging.WARNING, logger="lmforge"):
        enc = TASK.encode(tok, rows, INFO, cfg(128), "train")
    assert "rows [1]" in caplog.text and "rows [2]" in caplog.text and "skipped" in caplog.text
    assert enc.warnings["answer_not_found"] == 1 and enc.warnings["answer_start_mismatch"] == 1
    assert enc.warnings["answer_ambiguous"] == 1  # no answer_start: the first "1900" is used
    assert enc.references == [[good.label], ["1900"]]
    last = enc.features[-1]
    assert last["offsets"][last["start_positions"]] == (3, 7)
    test = TASK.encode(tok, rows, INFO, cfg(128), "test")  # kept and scored in test
    assert len(test.references) == 4
    with pytest.raises(DataError, match="none of the 1 'train' rows"):
        TASK.encode(tok, rows[1:2], INFO, cfg(128), "train")
    with pytest.raises(DataError, match=r"1 'train' rows have no question, e\.g\. rows \[1\]"):
        TASK.prepare({"train": [good, Document("ctx", label="ctx")], "test": []})
    with pytest.raises(DataError, match=r"'test' rows have no answer.*label_column"):
        TASK.prepare({"train": [good], "test": [Document("ctx", question="q?")]})


def test_best_span_keeps_start_before_end_inside_the_context():
    offsets = [None, (0, 5), (6, 10), (11, 15), None]
    s = torch.tensor([9.0, 1.0, 5.0, 0.0, 8.0])
    e = torch.tensor([9.0, 6.0, 1.0, 4.0, 9.0])
    # [CLS]/[SEP] (None) never win; (2, 1) has end before start; best is start 2, end 3
    assert best_span(s, e, offsets, n_best=20, max_tokens=30) == (9.0, 6, 15)
    assert best_span(s, e, offsets, n_best=20, max_tokens=1) == (7.0, 0, 5)  # 1 + 6
    assert best_span(s, e, [None] * 5, n_best=20, max_tokens=30) is None


class TokenScorer(torch.nn.Module):
    """Stands in for a trained QA model: each token's start and end logit is its id's score."""

    def __init__(self, scores: dict[int, float], virtual: int = 0):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(40_000), requires_grad=False)
        for i, v in scores.items():
            self.table.data[i] = v
        self.virtual = virtual  # prompt tuning: logits for virtual tokens come first

    def forward(self, input_ids, **_):
        logits = self.table[input_ids]
        logits = torch.cat([torch.full((len(logits), self.virtual), 99.0), logits], dim=1)
        return SimpleNamespace(start_logits=logits, end_logits=logits)


def test_predict_takes_the_best_span_over_all_windows_of_an_example(tok):
    filler = "the cat sat on the mat and looked around . " * 6
    long = Document(f"alpha {filler} beta", label="beta", question="which word?")
    short = Document("only alpha here", label="alpha", question="which word?")
    enc = TASK.encode(tok, [long, short], INFO, cfg(32), "test")
    assert sum(f["example_id"] == 0 for f in enc.features) >= 3  # alpha and beta far apart
    alpha, beta = tok.convert_tokens_to_ids(["alpha", "beta"])
    preds = TASK.predict(TokenScorer({alpha: 5.0, beta: 9.0}), enc, tok, INFO, cfg(32, 2))
    assert preds == ["beta", "alpha"]
    preds = TASK.predict(TokenScorer({alpha: 9.0, beta: 5.0}), enc, tok, INFO, cfg(32, 2))
    assert preds == ["alpha", "alpha"]
    assert TASK.metrics(enc.references, preds, INFO) == {"exact_match": 50.0, "f1": 50.0}


def test_prompt_tuning_virtual_tokens_shift_positions_and_logits(tok):
    doc = Document("only alpha here", label="alpha", question="which word?")
    prompt = FinetuneConfig(
        task="extractive-qa",
        method="prompt",
        max_length=32,
        method_config={"num_virtual_tokens": 4},
    )
    plain = TASK.encode(tok, [doc], INFO, cfg(32), "train")
    shifted = TASK.encode(tok, [doc], INFO, prompt, "train")
    assert shifted.batch([0])["start_positions"].item() == plain.batch([0])["start_positions"] + 4
    alpha = tok.convert_tokens_to_ids("alpha")
    model = TokenScorer({alpha: 5.0}, virtual=4)  # virtual-token logits (99) must be ignored
    assert TASK.predict(model, shifted, tok, INFO, prompt) == ["alpha"]
    with pytest.raises(LmforgeError, match="max_length=18 leaves 14 tokens.*after 4 virtual"):
        TASK.encode(tok, [doc], INFO, prompt.model_copy(update={"max_length": 18}), "train")


def test_served_prompt_tuned_reader_skips_the_virtual_logits(tok):
    """/v1/qa reads a prompt-tuned reader as predict does: windows leave the virtual tokens
    room and their logits (first in peft's output) are not context positions."""
    from lmforge.serve.loader import ServedModel
    from lmforge.serve.runners import answer

    prompt = FinetuneConfig(
        task="extractive-qa",
        method="prompt",
        max_length=32,
        method_config={"num_virtual_tokens": 4},
    )
    alpha = tok.convert_tokens_to_ids("alpha")
    served = ServedModel(
        name="reader", path=None, task="extractive-qa", kind="adapter", info=INFO,
        model=TokenScorer({alpha: 5.0}, virtual=4), processor=tok, cfg=prompt, why="test",
    )  # fmt: skip
    context = "the cat sat on the mat . " * 8 + "only alpha here"
    (result,) = answer(served, [("which word?", context)])
    assert result["answer"] == "alpha" and context[result["start"] : result["end"]] == "alpha"


def save_tiny_qa_bert(tok, path):
    """A fresh 1-layer BERT with a QA head for ``tok``'s vocabulary, saved to ``path``."""
    model = tiny_bert(
        BertForQuestionAnswering,
        vocab_size=len(tok),
        num_hidden_layers=1,
        max_position_embeddings=128,
    )
    model.save_pretrained(path)
    return path


def test_a_tiny_bert_learns_to_point_at_answers(tok, docs, tmp_path):
    """Overfitting a small set: the loop, positions and decoding agree end to end."""
    train = [d for d in docs if len(d.text) < 500][:8]  # short contexts: 1-2 windows
    base = save_tiny_qa_bert(tok, tmp_path / "base")
    model = apply_method("full", TASK.load_model(base, INFO), MethodConfig(), "QUESTION_ANS", 1)
    enc = TASK.encode(tok, train, INFO, cfg(128), "train")
    history = fit(model, enc, None, epochs=8, lr=1e-2, batch_size=8, warmup_ratio=0.0)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    test = TASK.encode(tok, train, INFO, cfg(128), "test")
    scores = TASK.metrics(test.references, TASK.predict(model, test, tok, INFO, cfg(128)), INFO)
    first_words = [d.text.split()[0] for d in train]  # a trivial predictor
    trivial = TASK.metrics(test.references, first_words, INFO)
    assert scores["exact_match"] >= trivial["exact_match"] + 50, (scores, trivial)
    model.save_pretrained(tmp_path / "trained")  # reloads in plain transformers
    reloaded = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "trained").eval()
    assert_same_logits(model.eval(), reloaded, test)


def assert_same_logits(a, b, enc):
    batch = enc.batch([0, 1])
    del batch["start_positions"], batch["end_positions"]
    with torch.no_grad():
        out_a, out_b = a(**batch), b(**batch)
    assert torch.allclose(out_a.start_logits, out_b.start_logits, atol=1e-5)
    assert torch.allclose(out_a.end_logits, out_b.end_logits, atol=1e-5)


def test_a_lora_adapter_for_qa_reloads_in_plain_peft(tok, docs, tmp_path):
    from peft import PeftModel

    save_tiny_qa_bert(tok, tmp_path / "base")
    model = TASK.load_model(tmp_path / "base", INFO)
    model = apply_method("lora", model, MethodConfig(), TASK.peft_task, total_steps=2)
    enc = TASK.encode(tok, docs[:8], INFO, cfg(128), "train")
    fit(model, enc, None, epochs=1, lr=1e-2, batch_size=8)
    model.save_pretrained(tmp_path / "adapter")
    base = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "base")
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    assert_same_logits(model.eval(), reloaded, enc)  # the trained qa_outputs head is saved too
    # merged: plain transformers, called with the tokenizer's segment ids (context = 1), answers
    # as the adapter does (peft's QA wrapper drops token_type_ids, so it trained on segment 0)
    assert any(1 in f["token_type_ids"] for f in enc.features)
    diff = merge_adapter(reloaded, enc, tmp_path / "merged", tok)
    assert diff < 1e-4
    merged = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "merged")
    assert_same_logits(model, merged, enc)


def test_sliding_window_baseline_answers_cloze_questions(docs):
    context = "Albedo was introduced into optics by Johann Lambert in 1760. It is 30% on Earth."
    assert sliding_window_answer(context, "Albedo was introduced into optics by who?") == (
        "Johann Lambert"
    )
    assert sliding_window_answer(context, "Albedo was introduced into optics when?") == "1760"
    assert sliding_window_answer(context, "It is what percentage on Earth?") == "30%"
    result = TASK.baseline({"train": [], "test": docs}, INFO)
    assert result["method"].startswith("sliding-window") and 30 < result["exact_match"] < 100
    assert result["f1"] >= result["exact_match"]


def test_squad_style_files_load_and_encode(tok, tmp_path):
    import json

    from lmforge.data.config import SourceConfig
    from lmforge.data.sources import LoadStats, load_source

    context = "Albedo was introduced into optics by Johann Lambert in 1760."
    rows = [
        {
            "context": context,
            "question": "Who?",
            "answers": {"text": ["Johann Lambert"], "answer_start": [37]},
        },
        {
            "context": context,
            "question": "When?",
            "answers": {"text": ["1760"], "answer_start": [55]},
        },
        {"context": context, "question": "Which?", "answers": "optics"},  # plain text answer
    ]
    path = tmp_path / "squad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    src = SourceConfig(
        path=path, text_column="context", label_column="answers", question_column="question"
    )
    docs = load_source(src, LoadStats())
    assert [(d.label, d.answer_start) for d in docs] == [
        ("Johann Lambert", 37),
        ("1760", 55),
        ("optics", None),
    ]
    enc = TASK.encode(tok, docs, TASK.prepare({"train": docs}), cfg(64), "train")
    spans = [
        context[f["offsets"][f["start_positions"]][0] : f["offsets"][f["end_positions"]][1]]
        for f in enc.features
    ]
    assert spans == ["Johann Lambert", "1760", "optics"]
