"""Attention maps, rollout and their figures; attributions and their faithfulness."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from conftest import keyword_texts

from lmforge.core.errors import LmforgeError
from lmforge.explain.attention import (
    attention_maps,
    attention_rollout,
    check_layer_head,
    write_attention_html,
    write_attention_pngs,
)
from lmforge.explain.attribution import (
    faithfulness,
    integrated_gradients,
    write_highlights_html,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rollout_of_identity_attention_is_identity_and_rows_sum_to_one():
    eye = np.broadcast_to(np.eye(5), (3, 2, 5, 5))
    assert np.allclose(attention_rollout(eye), np.eye(5))
    rng = np.random.default_rng(0)
    w = rng.random((3, 2, 5, 5))
    w /= w.sum(-1, keepdims=True)
    assert np.allclose(attention_rollout(w).sum(-1), 1)


def test_maps_cover_every_layer_and_head_and_draw(keyword_clf, tmp_path):
    text = "the market said shares of the bank rose"
    maps = attention_maps(keyword_clf, text)  # the tiny BERT loads with SDPA: switched to eager
    assert maps.weights.shape[:2] == (2, 2)
    assert maps.tokens[0] == "[CLS]" and len(maps.tokens) == maps.weights.shape[-1]
    assert np.allclose(maps.weights.sum(-1), 1, atol=1e-5)
    pngs = write_attention_pngs(maps, tmp_path, "ex0")
    assert [p.name for p in pngs] == ["ex0_layer0.png", "ex0_layer1.png", "ex0_rollout.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    page = write_attention_html([(maps, "predicted <b>x</b>")], tmp_path / "a.html")
    html = page.read_text(encoding="utf-8")
    assert "<script src" not in html and "http" not in html  # self-contained
    assert '"rollout"' in html  # the data is inline, one byte per weight (base64)
    data = json.loads(html.split("const DATA = ", 1)[1].split(";\n", 1)[0])
    t = len(maps.tokens)
    head = np.frombuffer(base64.b64decode(data[0]["weights"][1][0]), np.uint8).reshape(t, t)
    assert np.abs(head / 255 - maps.weights[1, 0]).max() <= 0.5 / 255 + 1e-6
    assert "predicted <b>x</b>" not in html  # "</" escaped: a caption cannot end the script
    with pytest.raises(LmforgeError, match=r"layer 5 does not exist; valid: 0\.\.1"):
        check_layer_head(maps, 5, 0)


def test_a_model_without_attention_outputs_is_a_clear_error(keyword_clf):
    class NoAttention(type(keyword_clf.model)):
        def forward(self, *args, output_attentions=False, **kwargs):
            out = super().forward(*args, **kwargs)
            out.attentions = None
            return out

    keyword_clf.model.__class__ = NoAttention
    with pytest.raises(LmforgeError, match="returns no attention weights"):
        attention_maps(keyword_clf, "the market")


def test_integrated_gradients_points_at_the_keyword(keyword_clf, tmp_path):
    a = integrated_gradients(keyword_clf, "the city said the market rose today", n_steps=256)
    assert keyword_clf.labels[a.target] == "business"
    content = [i for i, s in enumerate(a.special) if not s]
    top = max(content, key=lambda i: a.scores[i])
    assert a.tokens[top] == "market"
    # completeness: the scores add up to the change of log p(business) from the baseline
    assert abs(a.delta) < 0.1 * abs(sum(a.scores))
    page = write_highlights_html([a], keyword_clf.labels, tmp_path / "ig.html")
    assert "market</span>" in page.read_text(encoding="utf-8")


def test_ig_deletes_more_probability_than_random(keyword_clf):
    texts = [t for t, lab in keyword_texts(12, seed=5) if lab != "other"]
    atts = [integrated_gradients(keyword_clf, t, n_steps=16) for t in texts]
    f = faithfulness(keyword_clf, atts, k=3, random_runs=3)
    assert f.examples == len(texts) and f.attention is not None
    assert f.integrated_gradients > f.random + 0.1
