"""``lmforge improve``: corrections from the feedback store retrain the run's fine-tune."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import classify_section, local_encoder, write_csv

from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from lmforge.data.builtin import load_builtin
from lmforge.serve.feedback import FeedbackStore


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("improve")
    docs = load_builtin("bbc-news", limit=200)
    train = write_csv(tmp / "train.csv", docs[:80])
    test = write_csv(tmp / "test.csv", docs[80:110])
    base = local_encoder(tmp / "base", [d.text for d in docs[:80]])
    recipe = {"name": "ft", "finetune": classify_section(base, train, test, merge=True)}
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp / "run"
    assert main(["run", str(tmp / "r.yaml"), "--out", str(out)]) == 0
    return out, docs


def store_corrections(root, docs):
    store = FeedbackStore(root / "serve" / "feedback.sqlite")
    for i, d in enumerate(docs):
        store.log_response(f"r{i}", "ft", "/v1/classify", [d.text[:600]], [{"label": "x"}])
        store.add_feedback(f"r{i}", 1, d.label, None)  # the logged input: no --log-inputs
        store.add_feedback(f"r{i}", 1, d.label, None, d.text[:600])  # input sent along
    store.log_response("bad", "ft", "/v1/classify", ["t"], [])
    store.add_feedback("bad", 1, "no-such-label", None, "some text")
    store.close()


def test_improve_retrains_on_corrections_and_records_before_and_after(run, capsys):
    root, docs = run
    with pytest.raises(LmforgeError, match="no feedback store"):
        from lmforge.improve.run import improve

        improve(root)
    old = json.loads((root / "summary.json").read_text())["stages"]["finetune"]["metrics"]
    store_corrections(root, docs[110:150])
    assert main(["improve", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "corrections: 40" in printed and "accuracy" in printed
    summary = json.loads((root / "summary.json").read_text())["stages"]
    entry = summary["improve"]["metrics"]
    assert summary["improve"]["status"] == "done"
    assert entry["corrections"] == 40
    assert entry["skipped"] == {"no_input": 40, "unknown_label": 1, "misaligned": 0,
                                "other_route": 0}  # fmt: skip
    assert entry["test_examples"] == 30 and entry["train_examples"] == 120
    assert set(entry["before"]) == set(entry["after"]) and "accuracy" in entry["before"]
    assert entry["before"]["accuracy"] == pytest.approx(old["accuracy"], abs=0.04)
    fine = summary["finetune"]
    assert fine["metrics"]["train_examples"] == 120 and fine["improved"] is True
    assert fine["metrics"]["accuracy"] == entry["after"]["accuracy"]
    rows = (root / "improve" / "train.jsonl").read_text().count("\n")
    assert rows == 120
    assert not list(root.glob(".tmp-finetune-*")) and (root / "finetune" / "merged").is_dir()


def test_a_failed_improve_keeps_the_old_model(run, monkeypatch):
    root, docs = run
    if not (root / "serve" / "feedback.sqlite").exists():
        store_corrections(root, docs[110:150])
    before = (root / "finetune" / "model" / "adapter_model.safetensors").read_bytes()
    summary = (root / "summary.json").read_text()

    def broken(ctx, out):
        (out / "model").mkdir()
        raise RuntimeError("killed mid-training")

    monkeypatch.setattr("lmforge.finetune.stage.run_finetune_stage", broken)
    from lmforge.improve.run import improve

    with pytest.raises(RuntimeError):
        improve(root)
    assert (root / "finetune" / "model" / "adapter_model.safetensors").read_bytes() == before
    assert (root / "summary.json").read_text() == summary
    assert not list(root.glob(".tmp-finetune-*"))


def test_correction_rows_for_chat_and_classification():
    from lmforge.improve.run import correction_docs

    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]
    rows = [
        {
            "response_id": "1",
            "route": "/v1/chat/completions",
            "input": chat,
            "correction": "Hello!",
        },
        {"response_id": "2", "route": "/v1/completions", "input": ["Once"], "correction": "upon"},
        {"response_id": "3", "route": "/v1/classify", "input": ["x"], "correction": "a"},
        {"response_id": "4", "route": "/v1/chat/completions", "input": None, "correction": "r"},
    ]
    docs, skipped = correction_docs(rows, "instruction", None)
    assert [(d.text, d.label) for d in docs] == [("hi", "Hello!"), ("Once", "upon")]
    assert skipped == {"no_input": 1, "unknown_label": 0, "misaligned": 0, "other_route": 1}
    two = {"response_id": "5", "route": "/v1/classify", "input": ["x", "y"], "correction": "a"}
    from lmforge.tasks.classification import LabelInfo

    docs, skipped = correction_docs([rows[2], two], "classification", LabelInfo(["a", "b"]))
    assert [d.text for d in docs] == ["x"] and skipped["no_input"] == 1  # which of 2 texts?


def test_the_run_serves_its_merged_model_and_its_adapter_loads_too(run):
    from lmforge.serve import runners
    from lmforge.serve.loader import load_served

    root, docs = run
    merged = load_served(root)
    assert merged.path == root / "finetune" / "merged" and merged.name == "run"
    adapter = load_served(root / "finetune" / "model")
    assert adapter.kind == "adapter"
    texts = [d.text[:300] for d in docs[150:154]]
    a = runners.classify(merged, texts)
    b = runners.classify(adapter, texts)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    for x, y in zip(a, b, strict=True):
        assert x["scores"] == pytest.approx(y["scores"], abs=1e-3)
