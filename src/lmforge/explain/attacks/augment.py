"""Adversarial data augmentation: training documents plus perturbed copies, same labels.

Two modes. Without a victim model (before fine-tuning, as the finetune stage uses it), each
chosen document gets random edits from the attack's candidate generator in up to
``max_share`` of its units: the model learns that typos or homophones do not change the
class. With a victim (a model trained once), the copies are the attack's real successes:
adversarial training in the sense of Goodfellow et al. 2015, one round.
"""

from __future__ import annotations

import dataclasses
import random

from lmforge.data.document import Document
from lmforge.explain.attacks.base import ATTACKS, attack_text, replace_spans
from lmforge.explain.classifier import Classifier


def perturb_randomly(
    attack_name: str, text: str, rng: random.Random, max_share: float, clf: Classifier | None
) -> str:
    """``text`` with a random ``max_share`` of its units replaced by one candidate each."""
    attack = ATTACKS.get(attack_name)
    spans = attack.units(text)
    if not spans:
        return text
    k = max(1, int(max_share * len(spans)))
    edits = {}
    for span in rng.sample(spans, min(k, len(spans))):
        options = attack.candidates(text[span[0] : span[1]], rng, 1, clf)
        if options:
            edits[span] = options[0]
    return replace_spans(text, edits)


def adversarial_augment(
    docs: list[Document],
    attack: str = "char",
    *,
    share: float = 0.5,
    max_share: float = 0.25,
    seed: int = 0,
    clf: Classifier | None = None,
) -> list[Document]:
    """``docs`` followed by perturbed copies of a seeded ``share`` of them (labels kept).

    With ``clf`` the copies are successful attacks on ``clf`` (labels are class names in
    ``clf.labels``); without it, random edits (see the module doc).
    """
    rng = random.Random(seed)
    chosen = [d for d in docs if d.label is not None and rng.random() < share]
    extra = []
    for i, d in enumerate(chosen):
        if clf is None:
            text = perturb_randomly(attack, d.text, rng, max_share, None)
        else:
            label = clf.labels.index(str(d.label))
            r = attack_text(
                ATTACKS.get(attack), clf, d.text, label, max_share=max_share, seed=seed + i
            )
            if not r.success:
                continue
            text = r.perturbed
        if text != d.text:
            extra.append(dataclasses.replace(d, text=text))
    return [*docs, *extra]
