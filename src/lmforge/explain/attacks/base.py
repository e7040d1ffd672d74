"""What an attack is, the one greedy search they share, and TextAttack's measures.

An attack is a way to split a text into units (words, or characters for Chinese) and a
candidate generator for one unit. The search is TextFooler's (Jin et al. 2020): rank units by
importance (how much deleting each lowers the true class's probability), then replace units
in that order with the candidate that lowers it most, until the prediction changes or
``max_share`` of the units are changed. A success is counted only when the final text,
scored again from scratch, is predicted as another class.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmforge.core.registry import Registry
from lmforge.explain.classifier import Classifier

Span = tuple[int, int]  # [start, end) character offsets of one unit in the text

WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def word_spans(text: str) -> list[Span]:
    """Latin-script words (numbers and punctuation are left alone)."""
    return [m.span() for m in WORD.finditer(text)]


def cjk_spans(text: str) -> list[Span]:
    """Each CJK ideograph is a unit (Chinese has no spaces between words)."""
    return [(i, i + 1) for i, c in enumerate(text) if "\u4e00" <= c <= "\u9fff"]


@dataclass(frozen=True)
class Attack:
    """A registry entry: how to split a text, and the candidates for one unit."""

    name: str
    description: str
    units: Callable[[str], list[Span]]
    # (unit text, rng, how many, victim) -> replacement candidates (never the unit itself)
    candidates: Callable[[str, random.Random, int, Classifier | None], list[str]]


ATTACKS: Registry[Attack] = Registry("attack")


@dataclass
class AttackResult:
    """One example's attack: ``success`` means the victim's prediction really changed."""

    original: str
    perturbed: str
    label: int
    original_pred: int
    perturbed_pred: int
    status: str  # "success", "failed" (no flip within budget), "skipped" (already wrong)
    queries: int
    changed: int  # units replaced
    units: int  # units in the part of the text the model reads (max_length)

    @property
    def success(self) -> bool:
        return self.status == "success"


def replace_spans(text: str, edits: dict[Span, str]) -> str:
    """``text`` with each span replaced by its new string (spans must not overlap)."""
    out, last = [], 0
    for (start, end), new in sorted(edits.items()):
        out.append(text[last:start])
        out.append(new)
        last = end
    out.append(text[last:])
    return "".join(out)


def attack_text(
    attack: Attack,
    clf: Classifier,
    text: str,
    label: int,
    *,
    max_share: float = 0.25,
    candidates: int = 8,
    seed: int = 0,
) -> AttackResult:
    """Greedy word-importance attack on one example (see the module doc)."""
    rng = random.Random(seed)
    start_queries = clf.queries
    probs = clf.probs([text])[0]
    pred = int(probs.argmax())
    visible = clf.visible_chars(text)  # units cut off by truncation cannot matter
    spans = [s for s in attack.units(text) if s[1] <= visible]
    result = AttackResult(text, text, label, pred, pred, "skipped", 0, 0, len(spans))
    if pred != label or not spans:
        result.status = "skipped" if pred != label else "failed"
        result.queries = clf.queries - start_queries
        return result
    # importance: the drop of p(label) when the unit is deleted
    deleted = clf.probs([replace_spans(text, {s: ""}) for s in spans])[:, label]
    order = sorted(range(len(spans)), key=lambda i: deleted[i])
    budget = max(1, int(max_share * len(spans)))
    edits: dict[Span, str] = {}
    current_p = float(probs[label])
    for i in order:
        if len(edits) >= budget:
            break
        span = spans[i]
        options = attack.candidates(text[span[0] : span[1]], rng, candidates, clf)
        if not options:
            continue
        trials = [replace_spans(text, {**edits, span: c}) for c in options]
        p = clf.probs(trials)
        flipped = [j for j in range(len(options)) if int(p[j].argmax()) != label]
        best = min(flipped or range(len(options)), key=lambda j: p[j, label])
        if flipped or p[best, label] < current_p:
            edits[span] = options[best]
            current_p = float(p[best, label])
        if flipped:
            break
    perturbed = replace_spans(text, edits)
    final = clf.predict([perturbed])[0]  # scored again: a success must really flip
    result.perturbed, result.perturbed_pred, result.changed = perturbed, final, len(edits)
    result.status = "success" if final != label else "failed"
    result.queries = clf.queries - start_queries
    return result


@dataclass
class AttackSummary:
    """TextAttack's measures over a set of examples."""

    examples: int
    clean_accuracy: float
    accuracy_under_attack: float
    attack_success_rate: float  # successes / examples the model had right
    mean_share_changed: float  # over successful attacks: changed units / units
    queries_per_example: float  # over attacked examples (skipped ones excluded)
    results: list[AttackResult] = field(default_factory=list, repr=False)

    def metrics(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "results"}


def summarise(results: list[AttackResult]) -> AttackSummary:
    n = len(results)
    attacked = [r for r in results if r.status != "skipped"]
    wins = [r for r in attacked if r.success]
    return AttackSummary(
        examples=n,
        clean_accuracy=len(attacked) / n if n else 0.0,
        accuracy_under_attack=(len(attacked) - len(wins)) / n if n else 0.0,
        attack_success_rate=len(wins) / len(attacked) if attacked else 0.0,
        mean_share_changed=sum(r.changed / r.units for r in wins) / len(wins) if wins else 0.0,
        queries_per_example=sum(r.queries for r in attacked) / len(attacked) if attacked else 0.0,
        results=results,
    )


def run_attack(
    name: str,
    clf: Classifier,
    texts: list[str],
    labels: list[int],
    *,
    max_share: float = 0.25,
    candidates: int = 8,
    seed: int = 0,
) -> AttackSummary:
    """Attack every ``(text, label)`` with the registered attack ``name``."""
    attack = ATTACKS.get(name)
    results = [
        attack_text(attack, clf, t, y, max_share=max_share, candidates=candidates, seed=seed + i)
        for i, (t, y) in enumerate(zip(texts, labels, strict=True))
    ]
    return summarise(results)
