"""The task routes on a real server: auth, answers, limits and errors, metrics, feedback."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest
from conftest import KEY, LABELS, Served, auth


@pytest.fixture(scope="module")
def client(cls_server):
    with httpx.Client(base_url=cls_server.url, headers=auth(), timeout=30) as c:
        yield c


def test_health_is_open_and_every_other_route_needs_the_key(cls_server):
    assert httpx.get(cls_server.url + "/health").json()["status"] == "ok"
    for path in ("/v1/models", "/metrics", "/openapi.json"):
        assert httpx.get(cls_server.url + path).status_code == 401
        wrong = {"Authorization": "Bearer " + KEY[:-1] + "x"}
        r = httpx.get(cls_server.url + path, headers=wrong)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(cls_server.url + path, headers=auth()).status_code == 200
    r = httpx.post(cls_server.url + "/v1/classify", json={"texts": ["a"]})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]["message"]


def test_models_and_openapi(client):
    card = client.get("/v1/models").json()["data"][0]
    assert card["id"] == "topics" and card["task"] == "classification"
    assert card["labels"] == LABELS
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/chat/completions", "/v1/feedback"} <= set(paths)


def test_classify_returns_a_label_and_probabilities_per_text(client):
    r = client.post("/v1/classify", json={"texts": ["Shares fell", "The team won 2-1"]})
    assert r.status_code == 200
    body = r.json()
    assert body["id"].startswith("resp-") and body["model"] == "topics"
    assert len(body["results"]) == 2
    for res in body["results"]:
        assert res["label"] in LABELS
        assert set(res["scores"]) == set(LABELS)
        assert sum(res["scores"].values()) == pytest.approx(1, abs=1e-4)
        assert res["label"] == max(res["scores"], key=res["scores"].get)
    top = client.post("/v1/classify", json={"texts": ["x"], "top_k": 1}).json()
    assert len(top["results"][0]["scores"]) == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"texts": [1]}, "texts.0"),
        ({"texts": "one text"}, "texts"),
        ({}, "texts"),
        ({"texts": ["a"], "top_k": 0}, "top_k"),
        ({"texts": ["a"], "extra": 1}, "extra"),
        ({"texts": ["\ud800"]}, "texts.0"),
        ({"texts": []}, "texts"),
        ({"texts": ["a"] * 65}, "texts"),
        ({"texts": ["a" * 20_001]}, "texts[0]"),
    ],
)
def test_bad_requests_are_422_naming_the_field(client, body, param):
    r = client.post("/v1/classify", content=json.dumps(body))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"]


def test_limits_name_the_flag_to_raise(client):
    r = client.post("/v1/classify", json={"texts": ["a"] * 65})
    assert "--max-texts" in r.json()["error"]["message"]
    r = client.post("/v1/classify", json={"texts": ["a" * 20_001]})
    assert "--max-chars" in r.json()["error"]["message"]


def test_malformed_json_is_422_and_an_oversized_body_is_413(client):
    r = client.post("/v1/classify", content=b'{"texts": [')
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]["message"]
    big = json.dumps({"texts": ["a" * 1000] * 1100}).encode()
    assert client.post("/v1/classify", content=big).status_code == 413

    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(1100):
            yield b"a" * 1000

    assert client.post("/v1/classify", content=chunks()).status_code == 413
    assert client.post("/v1/classify", json={"texts": ["still serving"]}).status_code == 200


def test_a_route_for_another_task_says_which_model_is_served(client):
    r = client.post("/v1/ner", json={"texts": ["Ann lives in Paris"]})
    assert r.status_code == 400
    assert "token-classification" in r.json()["error"]["message"]
    r = client.post("/v1/classify", json={"texts": ["a"], "model": "other"})
    assert r.status_code == 404 and "'topics'" in r.json()["error"]["message"]


def test_embeddings_of_a_classifier_are_unit_vectors(client):
    r = client.post("/v1/embeddings", json={"model": "topics", "input": ["a b", "c"]})
    data = r.json()["data"]
    assert len(data) == 2
    assert sum(x * x for x in data[0]["embedding"]) == pytest.approx(1, abs=1e-4)


def test_metrics_count_requests_errors_latency_and_batches(client):
    client.post("/v1/classify", json={"texts": ["a"]})
    text = client.get("/metrics").text
    assert 'lmforge_requests_total{route="/v1/classify",status="200"}' in text
    assert 'lmforge_request_errors_total{route="/v1/classify",status="422"}' in text
    assert "lmforge_request_latency_seconds_bucket" in text
    assert 'lmforge_batch_size_count{queue="classify"}' in text
    assert 'lmforge_queue_depth{queue="classify"}' in text


def test_feedback_is_stored_with_the_response_it_is_about(client, classifier):
    answer = client.post("/v1/classify", json={"texts": ["The market rallied"]}).json()
    assert client.post("/v1/feedback", json={"response_id": "nope", "rating": 1}).status_code == 404
    r = client.post("/v1/feedback", json={"response_id": answer["id"]})
    assert r.status_code == 422
    r = client.post(
        "/v1/feedback",
        json={"response_id": answer["id"], "rating": 2, "correction": "business"},
    )
    assert r.status_code == 200 and r.json()["stored"] is True
    db = sqlite3.connect(classifier.parent / "topics.feedback.sqlite")
    (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"
    row = db.execute(
        "SELECT r.model, r.route, r.input, r.input_sha256, f.rating, f.correction "
        "FROM feedback f JOIN responses r ON r.id = f.response_id WHERE r.id = ?",
        (answer["id"],),
    ).fetchone()
    assert row[:3] == ("topics", "/v1/classify", json.dumps(["The market rallied"]))
    assert len(row[3]) == 64 and row[4:] == (2, '"business"')


def test_without_log_inputs_only_the_input_hash_is_kept(classifier, tmp_path):
    db = tmp_path / "fb.sqlite"
    served = Served(classifier, "--feedback-db", str(db))
    try:
        r = httpx.post(served.url + "/v1/classify", json={"texts": ["private words"]})
        rid = r.json()["id"]
    finally:
        served.stop()
    row = (
        sqlite3.connect(db)
        .execute("SELECT input, input_sha256 FROM responses WHERE id=?", (rid,))
        .fetchone()
    )
    assert row[0] is None and len(row[1]) == 64
    assert b"private words" not in db.read_bytes()
