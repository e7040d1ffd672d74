"""Offline metrics against small cases computed by hand."""

from __future__ import annotations

import math
import warnings

import pytest

from lmforge.evaluate.metrics import (
    classification_metrics,
    entity_metrics,
    generation_metrics,
    multilabel_metrics,
    perplexity,
    plot_confusion_matrix,
    squad_metrics,
)


def test_classification_metrics_hand_computed() -> None:
    # a: P=1, R=1/2, F1=2/3; b: P=2/3, R=1, F1=4/5; supports 2 and 2.
    m = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["micro_f1"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["weighted_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["per_class"]["a"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]


def test_classification_metrics_respects_label_order_and_absent_classes() -> None:
    m = classification_metrics(["体育", "财经"], ["体育", "体育"], labels=["财经", "体育", "科技"])
    assert m["confusion_matrix"] == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert m["per_class"]["科技"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_multilabel_metrics_hand_computed() -> None:
    # Indicator rows over (a, b, c): true 110/010/001, pred 100/010/011.
    m = multilabel_metrics([["a", "b"], ["b"], ["c"]], [["a"], ["b"], ["b", "c"]], ["a", "b", "c"])
    assert m["subset_accuracy"] == pytest.approx(1 / 3)
    assert m["hamming_loss"] == pytest.approx(2 / 9)
    assert m["micro_f1"] == pytest.approx(0.75)  # TP=3, FP=1, FN=1
    assert m["macro_f1"] == pytest.approx((1 + 0.5 + 1) / 3)


def test_multilabel_metrics_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="'z'"):
        multilabel_metrics([["a"]], [["z"]], ["a"])


def test_entity_boundary_error_is_both_false_positive_and_false_negative() -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]  # PER span too short; LOC right
    m = entity_metrics(true, pred)
    assert m["precision"] == pytest.approx(0.5)  # 1 TP, 1 FP
    assert m["recall"] == pytest.approx(0.5)  # 1 TP, 1 FN
    assert m["f1"] == pytest.approx(0.5)
    assert m["token_accuracy"] == pytest.approx(0.75)
    assert m["per_type"]["PER"]["f1"] == 0.0
    assert m["per_type"]["LOC"] == pytest.approx(
        {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    )


def test_entity_strict_mode_rejects_iob2_violations() -> None:
    true = [["B-ORG", "I-ORG", "O"]]
    pred = [["I-ORG", "I-ORG", "O"]]  # conlleval accepts I- opening a span; IOB2 does not
    assert entity_metrics(true, pred)["f1"] == pytest.approx(1.0)
    assert entity_metrics(true, pred, mode="strict", scheme="IOB2")["f1"] == 0.0


def test_entity_metrics_rejects_misaligned_sentences() -> None:
    with pytest.raises(ValueError, match="sentence 0"):
        entity_metrics([["O", "O"]], [["O"]])


def test_squad_official_normalisation() -> None:
    # Articles, case and punctuation are ignored; F1 of "Broncos of Denver" is P=2/3, R=1.
    m = squad_metrics(
        ["the Denver Broncos", "Broncos of Denver"],
        [["Denver Broncos", "The Denver Broncos."], ["Denver Broncos"]],
    )
    assert m["exact_match"] == pytest.approx(50.0)
    assert m["f1"] == pytest.approx((100.0 + 80.0) / 2)


def test_squad_takes_max_over_references() -> None:
    m = squad_metrics(["an apple pie"], [["banana", "Apple pie!"]])
    assert m == pytest.approx({"exact_match": 100.0, "f1": 100.0})


def test_squad_chinese_is_scored_on_characters() -> None:
    # "北京大学" vs "北京": 2 common chars, P = 2/4, R = 2/2, F1 = 2*0.5*1/1.5 = 2/3.
    m = squad_metrics(["北京大学"], [["北京"]])
    assert m["exact_match"] == 0.0
    assert m["f1"] == pytest.approx(200 / 3)
    # Chinese punctuation is stripped; Latin words stay whole next to CJK characters.
    assert squad_metrics(["北京。"], [["北京"]])["exact_match"] == 100.0
    assert squad_metrics(["GPT模型"], [["gpt 模型"]])["f1"] == pytest.approx(100.0)


def test_generation_identical_english_is_perfect() -> None:
    text = ["the cat sat on the mat", "a quick brown fox jumps"]
    m = generation_metrics(text, text)
    assert m["tokenize"] == "13a"
    assert m["bleu"] == pytest.approx(100.0)
    assert m["chrf"] == pytest.approx(100.0)


def test_generation_chinese_auto_detects_zh_tokenizer() -> None:
    text = ["我爱北京天安门", "今天天气很好"]
    m = generation_metrics(text, text)
    assert m["tokenize"] == "zh"
    assert m["bleu"] == pytest.approx(100.0)
    assert m["chrf"] == pytest.approx(100.0)
    # Without character tokenisation an unsegmented sentence is one "word", so any
    # difference scores BLEU 0; the zh tokenizer credits the shared 4-gram 我爱北京.
    pred, ref = ["我爱北京天安门"], ["我爱北京故宫"]
    assert generation_metrics(pred, ref, language="en")["bleu"] == 0.0
    assert generation_metrics(pred, ref)["bleu"] > 0.0


def test_generation_accepts_variable_reference_counts() -> None:
    m = generation_metrics(
        ["the cat sat on the mat", "hello there world"],
        [["a dog", "the cat sat on the mat"], ["hello there world"]],
    )
    assert m["bleu"] == pytest.approx(100.0)


def test_perplexity_is_exp_and_overflow_safe() -> None:
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(10.0)) == pytest.approx(10.0)
    assert perplexity(1e6) == math.inf


def test_plot_confusion_matrix_with_chinese_labels(tmp_path) -> None:
    path = tmp_path / "plots" / "cm.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = plot_confusion_matrix([[3, 1], [0, 4]], ["体育", "财经"], path, title="混淆矩阵")
    assert out == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 1000
    assert not [w for w in caught if "Glyph" in str(w.message)]


def test_plot_confusion_matrix_rejects_shape_mismatch(tmp_path) -> None:
    with pytest.raises(ValueError, match="3 labels"):
        plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "cm.png")
