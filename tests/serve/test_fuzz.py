"""Property-based fuzzing: over 1,000 malformed requests, not one 5xx, and still serving."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from conftest import Served, auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIELDS = {
    "/v1/classify": ["texts", "top_k", "model"],
    "/v1/ner": ["texts", "model"],
    "/v1/qa": ["question", "context", "model"],
    "/v1/translate": ["texts", "max_tokens"],
    "/v1/images/classify": ["images", "top_k"],
    "/v1/feedback": ["response_id", "rating", "correction", "input", "comment"],
    "/v1/completions": ["model", "prompt", "max_tokens", "temperature", "top_p", "n", "stop",
                        "seed", "stream", "stream_options", "logprobs", "echo"],
    "/v1/chat/completions": ["model", "messages", "max_tokens", "max_completion_tokens",
                             "temperature", "top_p", "n", "stop", "seed", "stream"],
    "/v1/embeddings": ["model", "input", "encoding_format", "dimensions"],
}  # fmt: skip
MODEL_IDS = st.sampled_from(["topics", "fuzz-llama", "x"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | MODEL_IDS
    | st.sampled_from(["\ud800", "", " ", "user", "base64", "张三在北京", "x" * 300])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    | st.dictionaries(st.sampled_from(["role", "content", "type", "text", "include_usage"]), inner,
                      max_size=3),
    max_leaves=12,
)  # fmt: skip


@st.composite
def requests(draw, routes):
    route = draw(st.sampled_from(routes))
    kind = draw(st.sampled_from(["fields", "fields", "fields", "json", "bytes", "get"]))
    if kind == "fields":
        names = draw(st.lists(st.sampled_from(FIELDS[route]), unique=True, max_size=6))
        body = {n: draw(values) for n in names}
        if draw(st.booleans()):
            body["extra_field"] = draw(values)
        return "POST", route, json.dumps(body).encode()
    if kind == "json":
        return "POST", route, json.dumps(draw(values)).encode()
    if kind == "bytes":
        return "POST", route, draw(st.binary(max_size=200))
    return "GET", route, b""


def fuzz(url: str, routes: list[str], examples: int, seen: list[int]) -> None:
    with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(requests(routes))
        def check(req):
            method, route, body = req
            r = client.request(method, route, content=body)
            seen.append(r.status_code)
            assert r.status_code < 500, (method, route, body, r.text)
            if r.status_code >= 400:
                assert r.json()["error"]["message"]

        check()


@pytest.fixture(scope="module")
def llm_fuzz_server(llama, tmp_path_factory):
    link = tmp_path_factory.mktemp("fuzz") / "fuzz-llama"
    link.symlink_to(llama)
    served = Served(link, "--max-tokens", "8", "--timeout", "10", "--api-key-env", "LMFORGE_TEST_KEY",
                    env={"LMFORGE_TEST_KEY": auth()["Authorization"][7:]})  # fmt: skip
    yield served
    served.stop()


def _no_5xx(url: str) -> None:
    text = httpx.get(url + "/metrics", headers=auth()).text
    assert not re.search(r'lmforge_requests_total\{[^}]*status="5\d\d"\}', text)


def test_malformed_requests_never_get_a_5xx(cls_server, llm_fuzz_server):
    seen: list[int] = []
    fuzz(cls_server.url, list(FIELDS), 600, seen)
    fuzz(llm_fuzz_server.url, list(FIELDS), 450, seen)
    assert len(seen) >= 1000
    assert sum(400 <= s < 500 for s in seen) > 900  # nearly all were refused, none crashed
    for server in (cls_server, llm_fuzz_server):
        _no_5xx(server.url)
    r = httpx.post(cls_server.url + "/v1/classify", json={"texts": ["ok"]}, headers=auth())
    assert r.status_code == 200
    body = {"model": "fuzz-llama", "prompt": "The", "max_tokens": 4}
    r = httpx.post(llm_fuzz_server.url + "/v1/completions", json=body, headers=auth())
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 4
