"""Attacks: a counted success really changes the prediction; measures add up."""

from __future__ import annotations

import random

import pytest
from conftest import keyword_texts

from lmforge.explain.attacks import ATTACKS, run_attack
from lmforge.explain.attacks.augment import adversarial_augment
from lmforge.explain.attacks.char import char_edits
from lmforge.explain.attacks.chinese import homophones
from lmforge.explain.attacks.word import embedding_neighbours

pytestmark = pytest.mark.usefixtures("one_thread")


def test_registry_holds_the_three_attacks():
    assert {"char", "word", "zh-char"} <= set(ATTACKS.names())
    with pytest.raises(Exception, match="unknown attack 'chr'; did you mean 'char'"):
        ATTACKS.get("chr")


def test_char_edits_are_one_edit_away_and_never_the_word():
    edits = char_edits("market", random.Random(0), 20)
    assert edits and "market" not in edits
    assert all(abs(len(e) - len("market")) <= 1 for e in edits)


def test_homophones_share_the_sound():
    from lmforge.explain.attacks.chinese import fuzzy, pinyin_table

    readings, _, _ = pinyin_table()
    out = homophones("好", random.Random(0), 30)
    assert out and "好" not in out
    assert all(fuzzy(readings[c][0]) == fuzzy("hao") for c in out)


@pytest.mark.parametrize("name", ["char", "word"])
def test_a_counted_success_really_flips_the_prediction(keyword_clf, name):
    data = [(t, lab) for t, lab in keyword_texts(30, seed=3) if lab != "other"]
    texts = [t for t, _ in data]
    labels = [keyword_clf.labels.index(lab) for _, lab in data]
    summary = run_attack(name, keyword_clf, texts, labels, max_share=0.3, candidates=20)
    wins = [r for r in summary.results if r.success]
    assert wins, f"{name} never succeeded on a keyword classifier"
    again = keyword_clf.predict([r.perturbed for r in wins])  # scored from scratch
    assert all(p != r.label for p, r in zip(again, wins, strict=True))
    assert all(r.perturbed != r.original and r.changed >= 1 for r in wins)
    for r in summary.results:
        if r.status == "failed":
            assert keyword_clf.predict([r.perturbed])[0] == r.label
    assert summary.accuracy_under_attack == pytest.approx(
        summary.clean_accuracy * (1 - summary.attack_success_rate)
    )
    assert 0 < summary.mean_share_changed <= 0.3 + 1e-9
    assert summary.queries_per_example > 1


def test_word_neighbours_come_from_the_model_vocabulary(keyword_clf):
    out = embedding_neighbours(keyword_clf, "Market", 5)
    assert len(out) == 5 and all(w[0].isupper() and w.lower() != "market" for w in out)
    assert embedding_neighbours(keyword_clf, "the", 5) == []  # stop words stay


def test_augment_keeps_labels_and_adds_perturbed_copies():
    from lmforge.data.document import Document

    docs = [Document(text=t, label=lab) for t, lab in keyword_texts(40)]
    out = adversarial_augment(docs, "char", share=0.5, seed=1)
    assert out[:40] == docs and 10 < len(out) - 40 <= 40
    originals = {d.text: d.label for d in docs}
    for d in out[40:]:
        assert d.text not in originals
    assert adversarial_augment(docs, "char", share=0.5, seed=1) == out  # seeded


def test_attacks_leave_what_truncation_cuts_off(keyword_clf):
    import dataclasses

    from lmforge.explain.attacks import attack_text

    clf = dataclasses.replace(keyword_clf, max_length=8)
    text = "the market said " + "today city week " * 20
    visible = clf.visible_chars(text)
    assert 10 < visible < 40
    r = attack_text(ATTACKS.get("char"), clf, text, clf.labels.index("business"), max_share=1.0)
    assert r.units <= 6  # only the words inside the first 8 tokens were candidates
    assert r.perturbed.endswith(text[visible:])
