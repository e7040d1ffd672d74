"""The official ``openai`` client, unchanged, against ``lmforge serve`` (streaming included)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from openai import BadRequestError, NotFoundError, OpenAI, UnprocessableEntityError


@pytest.fixture(scope="module")
def client(llm_server):
    return OpenAI(base_url=llm_server.url + "/v1", api_key="unused", max_retries=0)


def test_completions_with_n_seed_and_usage(client):
    r = client.completions.create(model="tiny-llama", prompt="The bank", max_tokens=6, n=2, seed=3)
    assert r.object == "text_completion" and len(r.choices) == 2
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.completion_tokens <= 12 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = client.completions.create(
        model="tiny-llama", prompt="The bank", max_tokens=6, n=2, seed=3
    )
    assert [c.text for c in again.choices] == [c.text for c in r.choices]


def test_chat_completion_and_its_stream_agree(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    whole = client.chat.completions.create(
        model="tiny-llama", messages=messages, max_tokens=8, temperature=0
    )
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason in ("stop", "length")
    stream = client.chat.completions.create(
        model="tiny-llama", messages=messages, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason


def test_stream_is_server_sent_events_ending_in_done(llm_server):
    body = {"model": "tiny-llama", "prompt": "The", "max_tokens": 5, "stream": True}
    with httpx.stream("POST", llm_server.url + "/v1/completions", json=body, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(e["object"] == "text_completion" for e in events)
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_embeddings_through_the_client_base64_default(client):
    r = client.embeddings.create(model="tiny-llama", input=["one", "two words"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 32
    assert sum(x * x for x in r.data[1].embedding) == pytest.approx(1, abs=1e-4)
    assert r.usage.prompt_tokens > 0


def test_errors_reach_the_client_with_their_message(client):
    with pytest.raises(UnprocessableEntityError, match="--max-tokens"):
        client.completions.create(model="tiny-llama", prompt="x", max_tokens=5000)
    with pytest.raises(UnprocessableEntityError, match="--max-n"):
        client.completions.create(model="tiny-llama", prompt="x", n=9)
    with pytest.raises(UnprocessableEntityError, match="temperature"):
        client.completions.create(model="tiny-llama", prompt="x", temperature=3)
    with pytest.raises(NotFoundError, match="tiny-llama"):
        client.completions.create(model="gpt-4o", prompt="x")
    with pytest.raises(BadRequestError, match="context"):
        client.completions.create(model="tiny-llama", prompt="the " * 5000, max_tokens=1)


def test_a_client_that_leaves_a_stream_frees_the_model(llm_server):
    """--max-batch-size 1: a long generation nobody reads would hold the model for seconds."""
    url = llm_server.url + "/v1/completions"
    body = {"model": "tiny-llama", "prompt": "The", "max_tokens": 3000, "stream": True}
    with httpx.stream("POST", url, json=body, timeout=30) as r:
        next(r.iter_lines())  # generation is running; now hang up
    start = time.perf_counter()
    short = httpx.post(
        url, json={"model": "tiny-llama", "prompt": "A", "max_tokens": 2}, timeout=60
    )
    assert short.status_code == 200
    alone = time.perf_counter() - start
    whole = _time_long_generation(url)
    assert alone < whole / 3, (alone, whole)


def test_a_client_that_times_out_frees_the_model(llm_server):
    url = llm_server.url + "/v1/completions"
    whole = _time_long_generation(url)
    body = {"model": "tiny-llama", "prompt": "The", "max_tokens": 3000,
            "temperature": 0, "stop": None}  # fmt: skip
    with pytest.raises(httpx.ReadTimeout):  # greedy, so as long as ``whole``: it cannot end early
        httpx.post(url, json=body, timeout=whole / 4)
    start = time.perf_counter()
    short = httpx.post(
        url, json={"model": "tiny-llama", "prompt": "A", "max_tokens": 2}, timeout=60
    )
    assert short.status_code == 200
    assert time.perf_counter() - start < whole / 3


def _time_long_generation(url: str) -> float:
    start = time.perf_counter()
    r = httpx.post(url, json={"model": "tiny-llama", "prompt": "The", "max_tokens": 3000,
                              "temperature": 0, "stop": None}, timeout=120)  # fmt: skip
    assert r.status_code == 200
    return time.perf_counter() - start


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["business", "sport"]},
        "score": {"type": "integer"},
    },
    "required": ["label", "score"],
}


def test_response_format_json_schema_always_parses(client):
    import jsonschema

    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}}
    r = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "Classify"}], max_tokens=60,
        n=3, seed=5, response_format=fmt,
    )  # fmt: skip
    for choice in r.choices:  # an untrained model: only the constraint makes these parse
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
        assert choice.finish_reason == "stop"


def test_response_format_json_object_and_bad_formats(llm_server):
    url = llm_server.url + "/v1/completions"
    body = {"model": "tiny-llama", "prompt": "The", "max_tokens": 40, "seed": 1}
    r = httpx.post(url, json={**body, "response_format": {"type": "json_object"}}, timeout=60)
    assert r.status_code == 200 and isinstance(json.loads(r.json()["choices"][0]["text"]), dict)
    plain = httpx.post(url, json={**body, "response_format": {"type": "text"}}, timeout=60)
    assert plain.status_code == 200
    missing = httpx.post(url, json={**body, "response_format": {"type": "json_schema"}})
    assert missing.status_code == 422 and "response_format.json_schema" in missing.text
    short = {"type": "json_schema", "json_schema": {"schema": SCHEMA}}
    r = httpx.post(url, json={**body, "max_tokens": 3, "response_format": short}, timeout=60)
    assert r.status_code == 422 and "max_new_tokens" in r.text
