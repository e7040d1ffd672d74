"""Classification end to end on real BBC News articles: encode, train, predict, score."""

import pytest
import torch
from helpers import tiny_bert, trained_tokenizer

from lmforge.core.errors import DataError
from lmforge.data.builtin import load_builtin
from lmforge.data.document import Document
from lmforge.finetune.config import FinetuneConfig
from lmforge.finetune.methods import MethodConfig, apply_method, trainable_parameters
from lmforge.finetune.train import fit, linear_schedule
from lmforge.tasks import TASKS
from lmforge.tasks.classification import LabelInfo

TASK = TASKS.get("classification")


def cfg(max_length=128, batch_size=16):
    return FinetuneConfig(max_length=max_length, batch_size=batch_size)


@pytest.fixture(scope="module")
def bbc():
    docs = load_builtin("bbc-news", limit=500)  # round-robin over the 5 topics
    return docs[:400], docs[400:]


@pytest.fixture(scope="module")
def wordpiece(bbc):
    return trained_tokenizer([d.text for d in bbc[0]], vocab_size=3000, max_length=128)


def test_encode_counts_truncation_and_rejects_unseen_labels(wordpiece):
    docs = [Document("short text", label="a"), Document("word " * 500, label="b")]
    info = LabelInfo.from_documents(docs)
    enc = TASK.encode(wordpiece, docs, info, cfg(64), "train")
    assert enc.truncated == 1 and max(len(f["input_ids"]) for f in enc.features) == 64
    assert enc.batch([0, 1])["labels"].tolist() == [0, 1]
    with pytest.raises(
        DataError, match=r"'test' rows have labels never seen.*rows \[1\] with \['c'\]"
    ):
        TASK.encode(
            wordpiece, [Document("x", label="a"), Document("y", label="c")], info, cfg(64), "test"
        )
    with pytest.raises(DataError, match="at least 2 labels"):
        LabelInfo.from_documents([Document("x", label="a")])


def test_multi_label_is_multi_hot(wordpiece):
    docs = [Document("x", label=["a", "b"]), Document("y", label=["c"])]
    info = LabelInfo.from_documents(docs)
    assert info.multi_label and info.labels == ["a", "b", "c"]
    enc = TASK.encode(wordpiece, docs, info, cfg(16), "train")
    assert enc.batch([0, 1])["labels"].tolist() == [[1, 1, 0], [0, 0, 1]]


def test_linear_schedule():
    assert linear_schedule(0, 100, 10) == pytest.approx(0.1)
    assert linear_schedule(10, 100, 10) == pytest.approx(1.0)
    assert linear_schedule(100, 100, 10) == 0.0


def test_a_small_bert_learns_bbc_topics_from_scratch(bbc, wordpiece, tmp_path):
    train_docs, test_docs = bbc
    info = LabelInfo.from_documents(train_docs)
    tiny_bert(
        vocab_size=len(wordpiece),
        hidden_size=64,
        intermediate_size=128,
        max_position_embeddings=128,
    ).save_pretrained(tmp_path / "base")
    model = TASK.load_model(tmp_path / "base", info)
    assert model.config.id2label[0] == info.labels[0] and model.config.num_labels == 5
    model = apply_method("full", model, MethodConfig(), TASK.peft_task, total_steps=100)
    train = TASK.encode(wordpiece, train_docs, info, cfg(), "train")
    test = TASK.encode(wordpiece, test_docs, info, cfg(), "test")
    history = fit(model, train, test, epochs=10, lr=1e-3, batch_size=16)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    m = TASK.metrics(test.references, TASK.predict(model, test, wordpiece, info, cfg()), info)
    assert m["accuracy"] > 0.45, m  # chance is 0.2; the tokenizer trains multi-threaded, so ±0.05
    assert len(m["confusion_matrix"]) == 5


def test_bf16_fine_tuning_runs_matmuls_in_bf16_and_keeps_fp32_weights(bbc, wordpiece, tmp_path):
    """finetune.precision: bf16 is mixed precision: autocast in the forward pass, fp32 master
    weights (and so fp32 AdamW states), and a model that still learns."""
    train_docs = bbc[0][:64]
    info = LabelInfo.from_documents(train_docs)
    tiny_bert(vocab_size=len(wordpiece), max_position_embeddings=128).save_pretrained(
        tmp_path / "base"
    )
    model = TASK.load_model(tmp_path / "base", info)
    train = TASK.encode(wordpiece, train_docs, info, cfg(), "train")
    seen: set[torch.dtype] = set()
    model.classifier.register_forward_hook(lambda mod, i, out: seen.add(out.dtype))
    history = fit(model, train, None, epochs=4, lr=2e-3, batch_size=16, precision="bf16")
    assert seen == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.slow
def test_lora_on_minilm_classifies_bbc(bbc):
    from transformers import AutoTokenizer

    from lmforge.models import resolve_model_path

    path = str(resolve_model_path("minilm-l6"))
    tok = AutoTokenizer.from_pretrained(path)
    train_docs, test_docs = bbc[0][:250], bbc[1]
    info = LabelInfo.from_documents(train_docs)
    torch.manual_seed(0)
    model = apply_method("lora", TASK.load_model(path, info), MethodConfig(), TASK.peft_task, 40)
    trainable, total = trainable_parameters(model)
    assert trainable < 0.01 * total
    train = TASK.encode(tok, train_docs, info, cfg(), "train")
    test = TASK.encode(tok, test_docs, info, cfg(), "test")
    fit(model, train, None, epochs=2, lr=2e-3, batch_size=16)
    m = TASK.metrics(test.references, TASK.predict(model, test, tok, info, cfg()), info)
    assert m["accuracy"] > 0.8, m


def test_tfidf_baseline_on_english_and_chinese(bbc):
    from lmforge.core.text import mostly_cjk
    from lmforge.evaluate.metrics import classification_metrics
    from lmforge.tasks.baselines import tfidf_logreg

    train, test = bbc
    preds = tfidf_logreg([d.text for d in train], [d.label for d in train], [d.text for d in test])
    assert classification_metrics([d.label for d in test], preds)["accuracy"] > 0.9
    zh = load_builtin("zh-sentiment", limit=1200)
    assert mostly_cjk([d.text for d in zh]) and not mostly_cjk([d.text for d in train])
    preds = tfidf_logreg(
        [d.text for d in zh[:1000]], [d.label for d in zh[:1000]], [d.text for d in zh[1000:]]
    )
    assert classification_metrics([d.label for d in zh[1000:]], preds)["accuracy"] > 0.7
