"""TCAV: concept vectors per layer, scores against random CAVs, and the errors users meet."""

from __future__ import annotations

import pytest
from conftest import SPORT, keyword_texts

from lmforge.core.errors import DataError, LmforgeError
from lmforge.explain.concepts import concept_texts
from lmforge.explain.tcav import check_layers, layer_names, tcav

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sport_concept_moves_the_sport_class_not_business(keyword_clf):
    texts = keyword_texts(60, seed=4)
    concept = [f"the {w} said {w} today" for w in SPORT] * 3
    pool = [t for t, _ in texts]
    by_class = {lab: [t for t, y in texts if y == lab][:12] for lab in ("sport", "business")}
    scores = {}
    for lab, target_texts in by_class.items():
        results = tcav(
            keyword_clf,
            concept,
            keyword_clf.labels.index(lab),
            target_texts,
            pool,
            layers=["layer.1"],
            runs=10,
            random_examples=15,
        )
        (r,) = results
        assert r.layer == "layer.1" and 0 <= r.p_value <= 1
        assert r.cav_accuracy > 0.8  # the layer separates sport words from random snippets
        scores[lab] = r
    assert scores["sport"].significant and scores["sport"].tcav > scores["business"].tcav


def test_unknown_layer_lists_the_valid_ones(keyword_clf):
    assert layer_names(keyword_clf) == ["embeddings", "layer.0", "layer.1"]
    with pytest.raises(LmforgeError, match=r"\['layer.7'\] do not exist.*embeddings, layer.0"):
        check_layers(keyword_clf, ["layer.7"])


def test_empty_concept_sets_are_errors(keyword_clf, tmp_path):
    empty = tmp_path / "concept.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="concept.txt has 0 concept example"):
        concept_texts(path=empty)
    with pytest.raises(LmforgeError, match="the concept has no examples"):
        tcav(keyword_clf, [], 0, ["the market"], ["the city"])
    assert len(concept_texts("sport-en")) >= 20 and len(concept_texts("praise-zh")) >= 20
