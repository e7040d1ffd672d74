"""Which script a text is written in: the one definition of "CJK" every stage uses.

Chinese and Japanese are written without spaces between words, so word-level tools (word
shingles, TF-IDF words, BLEU's 13a tokenizer, SQuAD's word F1) must switch to characters for
them. Every such switch asks this module, so all stages agree on what counts as CJK.
"""

from __future__ import annotations

import re

# Han ideographs: URO, extension A, compatibility ideographs, extensions B-G
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
KANA = "\u3040-\u30ff"  # hiragana and katakana
HANGUL = "\uac00-\ud7af"  # syllables (Korean separates words with spaces)
CJK_CHAR = re.compile(f"[{KANA}{HAN}]")
CJK_RUN = re.compile(f"[{KANA}{HAN}]+")
LETTER_RUN = re.compile(r"[^\W\d_]+")  # letters of any script
MOSTLY_CJK_SAMPLE = 200  # texts looked at by mostly_cjk: enough to tell a corpus's language


def count_chars(runs: re.Pattern[str], text: str) -> int:
    """Characters matched by ``runs`` (a ``[...]+`` pattern), without a string per match
    (``findall`` on a 50 MB Chinese line holds 50 M one-character strings: 4 GB)."""
    return sum(m.end() - m.start() for m in runs.finditer(text))


def has_cjk(text: str) -> bool:
    """True if ``text`` contains a Han or kana character."""
    return CJK_CHAR.search(text) is not None


def is_cjk_text(text: str) -> bool:
    """True when more than half of the letters of ``text`` are Han or kana."""
    if text.isascii() or not has_cjk(text):  # isascii() is O(1) in CPython
        return False
    return 2 * count_chars(CJK_RUN, text) > count_chars(LETTER_RUN, text)


def mostly_cjk(texts: list[str]) -> bool:
    """True when Han or kana make up at least half of the letters of a corpus (its first
    ``MOSTLY_CJK_SAMPLE`` texts): a Chinese or Japanese corpus, as a whole."""
    sample = texts[:MOSTLY_CJK_SAMPLE]
    letters = sum(count_chars(LETTER_RUN, t) for t in sample)
    return letters > 0 and 2 * sum(count_chars(CJK_RUN, t) for t in sample) >= letters


# ---------------------------------------------------------------- sentences

_OPENERS = "\"'(“‘["
_SENTENCE_END = re.compile(
    r"[.!?][\"'”’)\]]*\s+(?=[\"'(\[“‘]?[A-Z0-9])"  # English: then a capital or a digit
    r"|[。！？；…]+[\"'”’」』）)\]]*\s*"  # Chinese: no space after it
    r"|\s*\n\s*"  # a line break
)
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "e.g", "i.e", "etc", "c", "ca", "no",
    "vol", "fig", "inc", "ltd", "co", "gen", "col", "lt", "sgt", "rev", "prof", "mt", "approx",
    "al", "u.s", "cf", "pp", "ed", "eds", "jan", "feb", "aug", "sept", "oct", "nov", "dec",
}  # fmt: skip


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of an English or Chinese ``text``,
    surrounding whitespace excluded.

    A sentence ends at ``.!?`` followed by space and a capital or digit (so "3.5",
    "e.g. the" and "Mr. Smith", initials like "J. R. R. Tolkien" and the usual abbreviations
    do not end one), at Chinese ``。！？；…`` (no space follows them), or at a line break.
    """
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if text[m.start()] == ".":
            word = text[max(start, m.start() - 12) : m.start()].rsplit(None, 1)[-1:]
            prev = word[0].lstrip(_OPENERS).lower() if word else ""
            if len(prev) == 1 or prev in _ABBREVIATIONS:
                continue
        end = m.start() + len(m.group().rstrip())
        if text[start:end].strip():
            spans.append((start, end))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans
