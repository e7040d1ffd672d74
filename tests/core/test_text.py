"""One definition of CJK text for every stage (dedup shingles, TF-IDF, BLEU, SQuAD F1)."""

from __future__ import annotations

from lmforge.core.text import has_cjk, is_cjk_text, mostly_cjk


def test_han_and_kana_count_hangul_and_latin_do_not():
    assert has_cjk("人工智能") and has_cjk("ひらがな") and has_cjk("𠀀")  # extension B
    assert not has_cjk("한국어") and not has_cjk("café")


def test_a_text_is_cjk_when_most_of_its_letters_are():
    assert is_cjk_text("今天的新闻很有意思 about AI")
    assert not is_cjk_text("A long English sentence with one 字 in it.")
    assert not is_cjk_text("12345 !!!")


def test_a_corpus_is_mostly_cjk_by_its_letters():
    assert mostly_cjk(["这部电影很好看", "服务很差", "ok"])
    assert not mostly_cjk(["The film was great", "好"])
    assert not mostly_cjk([]) and not mostly_cjk(["123", "!!"])


def test_sentence_spans_english_abbreviations_and_chinese():
    from lmforge.core.text import sentence_spans

    text = (
        "Forests (e.g. Siberia) cool. Mr. Smith met J. R. R. Tolkien.\n今天很好。我们走吧！好吗？"
    )
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Forests (e.g. Siberia) cool.",
        "Mr. Smith met J. R. R. Tolkien.",
        "今天很好。",
        "我们走吧！",
        "好吗？",
    ]
    assert sentence_spans("  \n ") == [] and sentence_spans("3.5 left") == [(0, 8)]
