import json

from lmforge.core.hashing import fingerprint_path, hash_json
from lmforge.core.metrics import MetricsLogger, read_metrics
from lmforge.core.rundir import RunDir, StageResult, write_stage_state


def test_summary_has_the_documented_shape(tmp_path):
    run = RunDir(tmp_path / "r", "demo")
    run.record_stage("data", "done", 1.23456, StageResult({"docs": 3}, {"stats": "stats.json"}))
    run.record_stage("tokenizer", "failed", 0.5, error="boom")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["name"] == "demo"
    assert summary["stages"]["data"] == {
        "status": "done",
        "seconds": 1.235,
        "metrics": {"docs": 3},
        "artifacts": {"stats": "data/stats.json"},
    }
    assert summary["stages"]["tokenizer"]["status"] == "failed"
    assert summary["stages"]["tokenizer"]["error"] == "boom"


def test_completed_state_roundtrip(tmp_path):
    run = RunDir(tmp_path, "demo")
    assert run.completed_state("data") is None
    (tmp_path / "data").mkdir()
    write_stage_state(tmp_path / "data", "abc", StageResult({"n": 1}, {}))
    assert run.completed_state("data")["hash"] == "abc"


def test_metrics_log_is_jsonl_with_required_fields(tmp_path):
    log = MetricsLogger(tmp_path / "metrics.jsonl")
    log.log("pretrain", "loss", 2.5, step=10)
    log.log("pretrain", "loss", float("nan"), step=11)
    events = read_metrics(tmp_path / "metrics.jsonl")
    assert [e["step"] for e in events] == [10, 11]
    assert set(events[0]) == {"stage", "step", "name", "value", "time"}
    assert events[1]["value"] == "nan"  # still valid JSON


def test_hash_json_ignores_key_order_and_fingerprint_tracks_changes(tmp_path):
    assert hash_json({"a": 1, "b": 2}) == hash_json({"b": 2, "a": 1})
    f = tmp_path / "x.txt"
    f.write_text("one")
    before = fingerprint_path(tmp_path)
    f.write_text("one more")
    assert fingerprint_path(tmp_path) != before
