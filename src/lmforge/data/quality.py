"""Document quality: script-based language detection and the Gopher heuristics.

The heuristics are those of Rae et al. 2021 ("Scaling Language Models: Methods, Analysis &
Insights from Training Gopher", appendix A, MassiveText quality filter), with thresholds from
``GopherConfig``. They were designed for space-separated English; for Chinese, which has no
spaces, the word count is characters/2 (about two characters per word), the n-gram rules use
CJK characters as units with n doubled to match (a word 5-gram is a 10-character n-gram: on
708 People's Daily passages of ~300 characters, 5-character n-grams dropped 23 for stock
phrases such as 党的十五大, 10-character ones 6), and the mean-word-length rule is skipped.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

from lmforge.core.text import HAN, HANGUL, KANA
from lmforge.core.text import count_chars as _count_chars
from lmforge.data.config import GopherConfig

Language = Literal["zh", "en", "other"]

_HAN = re.compile(f"[{HAN}]+")
# kana (+ katakana phonetic extensions) and hangul (+ jamo)
_KANA_HANGUL = re.compile(f"[{KANA}\u31f0-\u31ff{HANGUL}\u1100-\u11ff]+")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]+")
_ASCII_WORD = re.compile(r"[a-z]+")
# Frequent English function words that are not words in the other common Latin-script
# languages (no "a", "in", "on", "die", ...), so French or German text does not pass as English.
_EN_STOPWORDS = frozenset({"the", "and", "of", "to", "is", "was", "for", "that", "with", "this"})
_EN_STOPWORDS |= {"are", "be", "have", "it", "from", "by", "not", "were", "which"}
_SHORT_TEXT_WORDS = 10  # below this many words, too few stopwords to judge; fall back to ASCII


def _letter_counts(text: str) -> tuple[int, int, int, int]:
    """(letters, Han ideographs, kana + hangul, Latin letters)."""
    letters = sum(c.isalpha() for c in text)
    return (
        letters,
        _count_chars(_HAN, text),
        _count_chars(_KANA_HANGUL, text),
        _count_chars(_LATIN, text),
    )


def detect_language(text: str) -> Language:
    """Guess ``"zh"``, ``"en"`` or ``"other"`` from the scripts used, without a model.

    Chinese: Han ideographs are at least 30% of the letters (one ideograph carries about as
    much as a 4-5 letter English word, so mixed text with English terms still counts) and kana
    or hangul are under 10% (which would make it Japanese or Korean). English: at least 80% of
    the letters are Latin and either 5% of the words (and at least two) are English stopwords,
    or the text is under 10 words and its letters are all ASCII. Anything else is ``"other"``.
    """
    letters, han, kana, latin = _letter_counts(text)
    if not letters:
        return "other"
    if han >= 0.3 * letters and kana < 0.1 * letters:
        return "zh"
    if latin < 0.8 * letters:
        return "other"
    words = hits = 0
    for m in _ASCII_WORD.finditer(text.lower()):  # one word at a time: no list of them all
        words += 1
        hits += m.group() in _EN_STOPWORDS
    if hits >= max(2, 0.05 * words):
        return "en"
    if words < _SHORT_TEXT_WORDS and all(c.isascii() for c in text if c.isalpha()):
        return "en"
    return "other"


def language_reason(text: str, languages: list[str]) -> str | None:
    """Why ``text`` fails the language filter, or None when its language is allowed."""
    lang = detect_language(text)
    return None if lang in languages else f"language '{lang}' not in {languages}"


_TOKEN = re.compile(r"\S+")  # a whitespace-separated token, as str.split() gives them
_BULLETS = ("•", "‣", "◦", "▪", "●", "○", "■", "□", "·", "*", "-", "–")
_ELLIPSES = ("...", "…")
# One unit per CJK character, else one per run of other non-space characters.
_CJK_UNIT = re.compile(f"[{KANA}{HANGUL}{HAN}]|[^\\s{KANA}{HANGUL}{HAN}]+")


def _has_word_char(token: str) -> bool:
    return any(c.isalnum() for c in token)


def _strip_punct(token: str) -> str:
    """Lower-case and drop leading/trailing punctuation, so ``Profit,`` and ``profit`` match."""
    start, end = 0, len(token)
    while start < end and not token[start].isalnum():
        start += 1
    while end > start and not token[end - 1].isalnum():
        end -= 1
    return token[start:end].lower()


def _is_cjk_text(text: str) -> bool:
    letters, han, kana, _ = _letter_counts(text)
    return bool(letters) and han + kana >= 0.5 * letters


def _top_ngram_frac(units: list[str], n: int) -> float:
    """Characters covered by the most frequent n-gram (if it repeats) over all characters."""
    total = sum(map(len, units))
    if len(units) < n or not total:
        return 0.0
    grams = Counter(tuple(units[i : i + n]) for i in range(len(units) - n + 1))
    gram, count = grams.most_common(1)[0]
    return 0.0 if count < 2 else min(1.0, count * sum(map(len, gram)) / total)


def _dup_ngram_frac(units: list[str], n: int) -> float:
    """Characters inside repeats of an earlier n-gram over all characters; overlapping repeats
    are counted once, first occurrences not at all (a document pasted twice gives ~0.5)."""
    total = sum(map(len, units))
    if len(units) < n or not total:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(units)
    for i in range(len(units) - n + 1):
        gram = tuple(units[i : i + n])
        if gram in seen:
            covered[i : i + n] = [True] * n
        else:
            seen.add(gram)
    return sum(len(u) for u, c in zip(units, covered, strict=True) if c) / total


def _word_count_reason(n_words: int, cfg: GopherConfig) -> str | None:
    if n_words < cfg.min_words:
        return f"too_few_words ({n_words} < {cfg.min_words})"
    if n_words > cfg.max_words:
        return f"too_many_words ({n_words} > {cfg.max_words})"
    return None


def gopher_reason(text: str, cfg: GopherConfig) -> str | None:
    """The first Gopher rule ``text`` fails, or None: the rule's name, then the measured value
    against the limit, as ``"too_few_words (12 < 50)"`` or ``"dup_line_frac 0.45 > 0.3"``.

    Rules in order: too_few_words / too_many_words, mean_word_length (not for Chinese),
    symbol_ratio ('#' or ellipses per word), bullet_lines_frac, ellipsis_lines_frac,
    alpha_words_frac, dup_line_frac, top_2gram_frac, dup_5gram_frac. Words are
    whitespace-separated tokens with a letter or digit (Chinese: one per two such characters).
    """
    cjk = _is_cjk_text(text)
    # The word count first, without per-word lists when the text could exceed max_words
    # (a word takes at least 2 characters with its separator): a document too long to keep
    # is rejected in memory independent of its length, and the lists below hold at most
    # max_words words.
    if cjk:
        n_words = sum(c.isalnum() for c in text) // 2
    elif (len(text) + 1) // 2 > cfg.max_words:
        n_words = sum(_has_word_char(m.group()) for m in _TOKEN.finditer(text))
    else:
        n_words = None  # counted from the word list below
    if n_words is not None and (reason := _word_count_reason(n_words, cfg)):
        return reason
    if cjk:
        # Punctuation-only runs stay out, as whitespace splitting attaches them to a word.
        units = [u.lower() for u in _CJK_UNIT.findall(text) if _has_word_char(u)]
        alpha_frac = sum(any(c.isalpha() for c in u) for u in units) / max(len(units), 1)
    else:
        tokens = text.split()
        words = [t for t in tokens if _has_word_char(t)]
        n_words = len(words)
        units = [u for u in map(_strip_punct, words) if u]
        alpha_frac = sum(any(c.isalpha() for c in t) for t in tokens) / max(len(tokens), 1)
        if reason := _word_count_reason(n_words, cfg):
            return reason
    if not n_words:
        return None  # min_words=0 and nothing to measure
    if not cjk:
        mean = sum(map(len, units)) / max(len(units), 1)
        if mean < cfg.min_mean_word_length:
            return f"mean_word_length {mean:.2f} < {cfg.min_mean_word_length:g}"
        if mean > cfg.max_mean_word_length:
            return f"mean_word_length {mean:.2f} > {cfg.max_mean_word_length:g}"

    symbols = max(text.count("#"), text.count("...") + text.count("…"))
    if symbols / n_words > cfg.max_symbol_ratio:
        return f"symbol_ratio {symbols / n_words:.2f} > {cfg.max_symbol_ratio:g}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    bullets = sum(line.startswith(_BULLETS) for line in lines) / len(lines)
    if bullets > cfg.max_bullet_lines:
        return f"bullet_lines_frac {bullets:.2f} > {cfg.max_bullet_lines:g}"
    ellipses = sum(line.endswith(_ELLIPSES) for line in lines) / len(lines)
    if ellipses > cfg.max_ellipsis_lines:
        return f"ellipsis_lines_frac {ellipses:.2f} > {cfg.max_ellipsis_lines:g}"
    if alpha_frac < cfg.min_alpha_words:
        return f"alpha_words_frac {alpha_frac:.2f} < {cfg.min_alpha_words:g}"

    seen: set[str] = set()
    dup_lines = 0
    for line in lines:
        dup_lines += line in seen
        seen.add(line)
    if dup_lines / len(lines) > cfg.max_duplicate_lines:
        return f"dup_line_frac {dup_lines / len(lines):.2f} > {cfg.max_duplicate_lines:g}"
    scale = 2 if cjk else 1  # characters per word
    top = _top_ngram_frac(units, 2 * scale)
    if top > cfg.max_top_ngram:
        return f"top_2gram_frac {top:.2f} > {cfg.max_top_ngram:g}"
    dup = _dup_ngram_frac(units, 5 * scale)
    if dup > cfg.max_duplicate_ngrams:
        return f"dup_5gram_frac {dup:.2f} > {cfg.max_duplicate_ngrams:g}"
    return None
