"""Generation guards on the HTTP routes: the server's --ban and --gate apply to every
generation request (OpenAI's content_filter), as they do for ``lmforge generate``."""

from __future__ import annotations

import httpx
import pytest
from conftest import LABELS, Served

from lmforge.explain.control import Guards, guard_processors
from lmforge.models.sampling import GenRequest, GenResult, SamplingParams, generate_batch
from lmforge.serve.loader import load_served
from lmforge.serve.openai_routes import gated, request_guards


def test_a_banned_phrase_never_appears_in_served_generations(llama):
    sm = load_served(llama)
    prompt = sm.processor("The bank")["input_ids"]

    def reply(guards: Guards | None) -> str:
        processors = []
        if guards is not None:
            processors, _ = guard_processors(sm.processor, guards, len(prompt), 30)
        params = SamplingParams(30, temperature=0, logits_processors=processors)
        eos = [sm.processor.eos_token_id]
        (out,) = generate_batch(sm.model, sm.processor, [GenRequest(prompt, params)], stop_ids=eos)
        return out.text

    free = reply(None)
    phrase = free[2:5]  # something the model says when free
    assert phrase.strip() and phrase in free
    guards = request_guards(None, Guards(banned=[phrase]))
    assert guards is not None and guards.banned == [phrase] and guards.json_schema is None
    assert phrase.lower() not in reply(guards).lower()


def test_a_flagged_reply_is_withheld_as_content_filter():
    class Gate:
        def flags(self, text: str) -> str | None:
            return "sport" if "goal" in text else None

    results = [GenResult("a goal!", [1], "stop", 3), GenResult("shares", [2], "length", 3)]
    out = gated(results, Guards(gate=Gate()))
    assert [(r.text, r.finish_reason) for r in out] == [
        ("", "content_filter"),
        ("shares", "length"),
    ]
    assert gated(results, None) is results


@pytest.fixture(scope="module")
def gated_server(llama, classifier):
    refuse = [a for label in LABELS for a in ("--gate-refuse", label)]
    # three classes: one always has p >= 1/3, so a 0.3 threshold refuses every prompt
    served = Served(llama, "--gate", str(classifier), *refuse, "--gate-threshold", "0.3")
    yield served
    served.stop()


def test_the_server_gate_refuses_prompts_and_keeps_serving(gated_server):
    url = gated_server.url
    body = {"model": "tiny-llama", "prompt": ["fine", "also fine"], "max_tokens": 4}
    r = httpx.post(url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "content_filter" and "prompt[0] is refused" in error["message"]
    chat = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(url + "/v1/chat/completions", json=chat, timeout=60)
    assert r.status_code == 400 and "messages[0] is refused" in r.text
    assert httpx.get(url + "/health", timeout=10).status_code == 200
