"""Batched sampling: left padding + KV cache give what each prompt gives alone."""

from __future__ import annotations

import pytest

from lmforge.models.sampling import GenRequest, SamplingParams, generate_batch
from lmforge.serve.loader import load_served, pick_artifact


@pytest.fixture(scope="module")
def served(llama):
    return load_served(llama)


def run(sm, prompts, **params):
    reqs = [GenRequest(sm.processor(p)["input_ids"], SamplingParams(**params)) for p in prompts]
    eos = [sm.processor.eos_token_id]
    return generate_batch(sm.model, sm.processor, reqs, stop_ids=eos, context=4096)


def test_a_causal_lm_without_manifest_is_served_for_generation(served, llama):
    assert served.task == "instruction" and served.generative
    assert pick_artifact(llama) == (llama, f"serving the model directory {llama}")


def test_batched_greedy_equals_one_prompt_at_a_time(served):
    prompts = ["The bank", "Shares in the company fell sharply after", "A"]
    together = run(served, prompts, max_tokens=12, temperature=0)
    alone = [run(served, [p], max_tokens=12, temperature=0)[0] for p in prompts]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert all(r.completion_tokens == 12 and r.finish_reason == "length" for r in together)


def test_same_seed_same_text_and_seeds_differ(served):
    a = run(served, ["The bank"], max_tokens=10, seed=7)[0]
    b = run(served, ["The bank", "Other prompt"], max_tokens=10, seed=7)[0]
    c = run(served, ["The bank"], max_tokens=10, seed=8)[0]
    assert a.token_ids == b.token_ids != c.token_ids


def test_stop_strings_end_the_text_and_are_not_returned(served):
    free = run(served, ["The bank"], max_tokens=20, temperature=0)[0].text
    stop = free[3:5]
    cut = run(served, ["The bank"], max_tokens=20, temperature=0, stop=[stop])[0]
    assert cut.finish_reason == "stop" and cut.text == free[: free.find(stop)]


def test_logits_processors_and_stop_criteria_plug_in(served):
    target = 65

    def force(ids, scores):  # the hook a generation guard (banned words, JSON) uses
        scores[:] = -1e9
        scores[0, target] = 0
        return scores

    def three(ids, scores):
        return bool((ids[0, -3:] == target).all())

    (out,) = run(served, ["The bank"], max_tokens=10, logits_processors=[force])
    assert out.token_ids == [target] * 10
    (out,) = run(served, ["The bank"], max_tokens=10, logits_processors=[force],
                 stop_criteria=[three])  # fmt: skip
    assert out.token_ids == [target] * 3 and out.finish_reason == "stop"


def test_a_cancelled_row_stops_and_the_others_go_on(served):
    reqs = [
        GenRequest(served.processor("a b")["input_ids"], SamplingParams(40, temperature=0))
        for _ in range(2)
    ]
    seen = []

    def on_text(text):
        seen.append(text)
        if len(seen) == 3:
            reqs[0].cancelled.set()

    reqs[0].on_text = on_text
    out = generate_batch(served.model, served.processor, reqs, stop_ids=[], context=4096)
    assert out[0].finish_reason == "cancelled" and out[0].completion_tokens < 10
    assert out[1].completion_tokens == 40


def test_explain_control_guards_plug_in_with_the_row_own_prompt_length(served):
    """A banned phrase from lmforge.explain.control never appears, padded batch or not."""
    from lmforge.explain.control import BannedPhrases

    tok = served.processor
    prompts = ["The bank", "Shares in the company fell sharply after the"]
    free = run(served, prompts, max_tokens=16, temperature=0)
    import re

    words = re.findall(r"[A-Za-z]{3,}", free[0].text + " " + free[1].text)
    assert words  # the unguarded outputs hold a word to ban
    phrase = words[0][:3]
    reqs = []
    for p in prompts:
        ids = tok(p)["input_ids"]
        ban = BannedPhrases(tok, [phrase], prompt_length=len(ids))
        reqs.append(GenRequest(ids, SamplingParams(16, temperature=0, logits_processors=[ban])))
    out = generate_batch(served.model, tok, reqs, stop_ids=[tok.eos_token_id], context=4096)
    assert all(phrase.lower() not in r.text.lower() for r in out)
