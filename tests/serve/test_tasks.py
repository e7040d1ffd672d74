"""NER and QA answers carry character offsets into the text the client sent."""

from __future__ import annotations

import httpx
import pytest
from conftest import TAGS, Served, save_reader, save_tagger

from lmforge.serve.runners import entities, words


def test_words_split_chinese_per_character_and_keep_offsets():
    text = "张三在北京, Ann  met Bob."
    spans = words(text)
    assert [w for w, _, _ in spans][:6] == ["张", "三", "在", "北", "京", ","]
    assert all(text[s:e] == w for w, s, e in spans)
    assert ("Ann", 7, 10) in spans and ("Bob", 16, 19) in spans
    # People's Daily: full-width digits and letters are one token each, as CJK characters
    assert [w for w, _, _ in words("１９９８年ＡＰＥＣ会议 in 1998")] == [
        *"１９９８年ＡＰＥＣ会议", "in", "1998"]  # fmt: skip


def test_entities_from_bio_tags_with_offsets_into_the_original_text():
    text = "张三在北京工作。"
    spans = words(text)
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O"]
    assert entities(text, spans, tags) == [
        {"type": "PER", "start": 0, "end": 2, "text": "张三"},
        {"type": "LOC", "start": 3, "end": 5, "text": "北京"},
    ]
    text = "Ann  Lee visited New York"
    spans = words(text)
    found = entities(text, spans, ["B-PER", "I-PER", "O", "I-LOC", "I-LOC"])
    assert found[0] == {"type": "PER", "start": 0, "end": 8, "text": "Ann  Lee"}
    assert found[1]["text"] == "New York"  # an I- without B- opens an entity, as seqeval


@pytest.fixture(scope="module")
def ner_server(tmp_path_factory, texts):
    served = Served(save_tagger(tmp_path_factory.mktemp("models") / "tagger", texts))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def qa_server(tmp_path_factory, texts):
    served = Served(save_reader(tmp_path_factory.mktemp("models") / "reader", texts))
    yield served
    served.stop()


def test_ner_route_offsets_index_the_original_text(ner_server):
    sent = ["张三在北京工作。", "Ann Lee moved to Paris in 2020.", "   "]
    r = httpx.post(ner_server.url + "/v1/ner", json={"texts": sent}, timeout=30)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3 and results[2] == {"entities": []}
    for text, res in zip(sent, results, strict=True):
        for e in res["entities"]:
            assert e["type"] in {t[2:] for t in TAGS if t != "O"}
            assert text[e["start"] : e["end"]] == e["text"]


def test_qa_answer_is_a_span_of_the_context(qa_server):
    context = "The meeting is on Tuesday in Berlin. " * 20  # several windows
    r = httpx.post(
        qa_server.url + "/v1/qa",
        json={"question": "Where is the meeting?", "context": context},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    (ans,) = r.json()["results"]
    assert ans["answer"] == context[ans["start"] : ans["end"]] and ans["answer"]
    r = httpx.post(qa_server.url + "/v1/qa", json={"question": "x"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "context"


def test_ner_and_qa_corrections_are_stored_in_their_answer_shape(ner_server, qa_server, tmp_path):
    """/v1/feedback takes NER entities and QA answer spans (and QA's input), as improve reads
    them back; a malformed entity is a 422 naming the field."""
    from lmforge.serve.feedback import read_corrections

    text = "张三在北京工作。"
    rid = httpx.post(ner_server.url + "/v1/ner", json={"texts": [text]}, timeout=30).json()["id"]
    fixed = [{"type": "PER", "start": 0, "end": 2, "text": "张三"}]
    body = {"response_id": rid, "correction": fixed, "input": text}
    assert httpx.post(ner_server.url + "/v1/feedback", json=body).status_code == 200
    body["correction"] = [{"type": "PER", "start": "zero", "end": 2}]
    r = httpx.post(ner_server.url + "/v1/feedback", json=body)
    assert r.status_code == 422 and r.json()["error"]["param"].startswith("correction")
    qa = {"question": "Where?", "context": "It is in Berlin."}
    rid_qa = httpx.post(qa_server.url + "/v1/qa", json=qa, timeout=30).json()["id"]
    answer = {"answer": "Berlin", "start": 9, "end": 15, "score": 0.1}  # a /v1/qa result, fixed
    body = {"response_id": rid_qa, "correction": answer, "input": qa}
    assert httpx.post(qa_server.url + "/v1/feedback", json=body).status_code == 200
    stored = [  # the store beside each model directory (no run around it)
        row
        for served in (ner_server, qa_server)
        for db in served.log.parent.glob("*.feedback.sqlite")
        for row in read_corrections(db)
    ]
    by_id = {r["response_id"]: r for r in stored}
    assert by_id[rid]["correction"] == [{"type": "PER", "start": 0, "end": 2, "text": "张三"}]
    assert by_id[rid]["input"] == text
    assert by_id[rid_qa]["correction"] == {"answer": "Berlin", "start": 9}
    assert by_id[rid_qa]["input"] == qa
