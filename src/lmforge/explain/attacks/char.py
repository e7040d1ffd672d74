"""Character-level attack (DeepWordBug-style, Gao et al. 2018): swap two neighbours, delete
one character, a keyboard-neighbour typo, or a look-alike (homoglyph) letter, in one word."""

from __future__ import annotations

import random

from lmforge.explain.attacks.base import ATTACKS, Attack, word_spans
from lmforge.explain.classifier import Classifier

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
KEYBOARD = {
    c: "".join(
        row[j]
        for r2, row in enumerate(_ROWS)
        for j in (i - 1, i, i + 1)
        if abs(r2 - r) <= 1 and 0 <= j < len(row) and row[j] != c
    )
    for r, line in enumerate(_ROWS)
    for i, c in enumerate(line)
}
# Latin letters and the Cyrillic/Greek letters drawn the same (a reader sees no change)
HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}


def char_edits(word: str, rng: random.Random, n: int) -> list[str]:
    """Up to ``n`` distinct one-edit variants of ``word`` (never ``word`` itself)."""
    options: set[str] = set()
    for i in range(len(word) - 1):
        if word[i] != word[i + 1]:
            options.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    if len(word) > 1:
        options.update(word[:i] + word[i + 1 :] for i in range(len(word)))
    for i, c in enumerate(word):
        for k in KEYBOARD.get(c.lower(), ""):
            options.add(word[:i] + k + word[i + 1 :])
        if c in HOMOGLYPHS:
            options.add(word[:i] + HOMOGLYPHS[c] + word[i + 1 :])
    options.discard(word)
    ordered = sorted(options)
    rng.shuffle(ordered)
    return ordered[:n]


def _candidates(word: str, rng: random.Random, n: int, clf: Classifier | None) -> list[str]:
    return char_edits(word, rng, n)


ATTACKS.add(
    "char",
    Attack(
        "char",
        "character swaps, deletions, keyboard typos and homoglyphs in the most important words",
        word_spans,
        _candidates,
    ),
)
