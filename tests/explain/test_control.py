"""Generation guards: a banned phrase never appears, constrained output always parses."""

from __future__ import annotations

import json

import pytest

from lmforge.core.errors import LmforgeError
from lmforge.explain.control import (
    BannedPhrases,
    ClassifierGate,
    Guards,
    RegexConstraint,
    cut_text,
    guarded_generate,
    token_bytes,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CORPUS = [
    'Hello world, this is a test. 中文测试 {"name": "bob", "age": 12} 0123456789 '
    "how to build a bomb at home; Bomb BOMB bombs"
] * 50


@pytest.fixture(scope="module")
def lm():
    """A random 1-layer GPT-2 on a byte-level BPE tokenizer: it says anything at all."""
    import torch
    from helpers import trained_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = trained_tokenizer(CORPUS, kind="bpe", vocab_size=400)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return GPT2LMHeadModel(config).eval(), tok


class Tempt:
    """A logits processor that makes the model want to write ``phrase``: it boosts every token
    whose bytes occur in it (as a prompt asking for it would, only stronger)."""

    def __init__(self, tok, phrase: str) -> None:
        lower = phrase.lower().encode()
        self.ids = [i for i, b in enumerate(token_bytes(tok)) if b and b.lower() in lower]

    def __call__(self, input_ids, scores):
        scores[:, self.ids] += 8.0
        return scores


def _generate(lm, processors, seed, n=30):
    import torch
    from transformers import LogitsProcessorList

    model, tok = lm
    enc = tok("please write the word bomb:", return_tensors="pt")
    torch.manual_seed(seed)
    out = model.generate(
        **enc,
        do_sample=True,
        max_new_tokens=n,
        pad_token_id=tok.pad_token_id,
        logits_processor=LogitsProcessorList(processors(enc["input_ids"].shape[1])),
    )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_token_bytes_concatenate_to_the_decoded_text(lm):
    _, tok = lm
    table = token_bytes(tok)
    for text in ["Hello world 中文测试 bomb!", ' x  y\n{"a": 1}']:
        ids = tok(text)["input_ids"]
        assert b"".join(table[i] for i in ids).decode() == tok.decode(ids)


def test_a_banned_phrase_never_appears_even_when_the_model_wants_it(lm):
    _, tok = lm
    tempted = [_generate(lm, lambda n: [Tempt(tok, "bomb")], seed) for seed in range(10)]
    assert any("bomb" in t.lower() for t in tempted)  # without the guard it does say it
    for seed in range(10):
        text = _generate(
            lm, lambda n: [Tempt(tok, "bomb"), BannedPhrases(tok, ["BOMB", "中文"], n)], seed
        )
        assert "bomb" not in text.lower() and "中文" not in text


def test_regex_output_always_matches(lm):
    import re

    model, tok = lm
    for seed in range(6):
        out = guarded_generate(
            model, tok, "code:", Guards(regex=r"[0-9]{3}-[a-z]{2,4}", max_new_tokens=12), seed=seed
        )
        assert re.fullmatch(r"[0-9]{3}-[a-z]{2,4}", out.text), out


def test_json_schema_output_always_parses_and_validates(lm):
    import jsonschema

    model, tok = lm
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    for seed in range(6):  # a budget so tight that unconstrained numbers would run past it
        out = guarded_generate(
            model, tok, "{", Guards(json_schema=schema, max_new_tokens=25), seed=seed
        )
        jsonschema.validate(json.loads(out.text), schema)


def test_unsatisfiable_or_invalid_constraints_are_clear_errors(lm):
    _, tok = lm
    with pytest.raises(LmforgeError, match="needs at least 50 tokens"):
        RegexConstraint(tok, "a{50}", 1, 10)
    with pytest.raises(LmforgeError, match="not a valid regular expression"):
        RegexConstraint(tok, "[", 1, 10)
    with pytest.raises(LmforgeError, match="lookarounds"):
        RegexConstraint(tok, "(?!x)x", 1, 10)
    with pytest.raises(LmforgeError, match="empty"):
        BannedPhrases(tok, ["  "], 1)


def test_stop_sequences_and_length_caps_cut_the_text(lm):
    model, tok = lm
    assert cut_text("abc STOP def", ["STOP"], None) == ("abc ", "stop")
    assert cut_text("abcdef", [], 3) == ("abc", "max_chars")
    out = guarded_generate(model, tok, "x", Guards(max_new_tokens=40, max_chars=5), seed=1)
    assert len(out.text) <= 5


def test_classifier_gate_refuses_prompt_and_response(lm, keyword_model_dir):
    model, tok = lm
    gate = ClassifierGate.load(str(keyword_model_dir), refuse=["sport"], threshold=0.5)
    # a prompt as sporty as the gate's training texts (9 words, keywords in filler); a 4-word
    # one scored 0.44-0.83 for sport depending on the tokenizer the run trained
    sporty = "the striker scored a goal in the league match today"
    out = guarded_generate(model, tok, sporty, Guards(gate=gate))
    assert out.finish == "refused" and out.refused == "prompt: sport" and out.text == ""
    passed = guarded_generate(model, tok, "the market said", Guards(gate=gate, max_new_tokens=5))
    # the prompt passes; an untrained model's reply may still be flagged, and then withheld
    assert passed.refused is None or (passed.refused.startswith("response") and not passed.text)
    with pytest.raises(LmforgeError, match="not among the gate model's classes"):
        ClassifierGate.load(str(keyword_model_dir), refuse=["weather"])
