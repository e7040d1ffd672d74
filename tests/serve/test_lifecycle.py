"""A server that is killed keeps what it acknowledged; one that is stopped finishes its work."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import httpx
from conftest import Served


def test_feedback_survives_kill_9_right_after_the_200(classifier, tmp_path):
    db = tmp_path / "feedback.sqlite"
    served = Served(classifier, "--feedback-db", str(db))
    ids = []
    try:
        for i in range(5):
            rid = httpx.post(served.url + "/v1/classify", json={"texts": [f"t{i}"]}).json()["id"]
            r = httpx.post(
                served.url + "/v1/feedback", json={"response_id": rid, "correction": "tech"}
            )
            assert r.status_code == 200
            ids.append(rid)
        served.proc.send_signal(signal.SIGKILL)  # no shutdown, no checkpoint of the WAL
        served.proc.wait()
    finally:
        served.stop()
    rows = sqlite3.connect(db).execute("SELECT response_id, correction FROM feedback").fetchall()
    assert rows == [(rid, '"tech"') for rid in ids]


def test_sigterm_finishes_the_request_in_flight(llama):
    served = Served(llama, "--max-tokens", "3000")
    result = {}

    def long_request():
        body = {"model": "tiny-llama", "prompt": "The", "max_tokens": 2000, "temperature": 0}
        start = time.perf_counter()
        result["r"] = httpx.post(served.url + "/v1/completions", json=body, timeout=120)
        result["seconds"] = time.perf_counter() - start

    worker = threading.Thread(target=long_request)
    worker.start()
    try:
        time.sleep(1.0)  # the request is being generated
        code = served.stop(signal.SIGTERM)
        worker.join(120)
    finally:
        served.stop(signal.SIGKILL)
    r = result["r"]
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] > 0
    assert result["seconds"] > 1.0  # it was still running when SIGTERM came
    assert code == 0
    try:
        httpx.get(served.url + "/health", timeout=2)
        raise AssertionError("still serving after SIGTERM")
    except httpx.ConnectError:
        pass


def test_a_request_over_the_timeout_is_504_naming_the_flag(llama):
    served = Served(llama, "--max-tokens", "3000", "--timeout", "1")
    try:
        body = {"model": "tiny-llama", "prompt": "The", "max_tokens": 3000, "temperature": 0}
        r = httpx.post(served.url + "/v1/completions", json=body, timeout=60)
        assert r.status_code == 504 and "--timeout" in r.json()["error"]["message"]
        body["max_tokens"] = 2
        assert httpx.post(served.url + "/v1/completions", json=body).status_code == 200
    finally:
        served.stop()
