"""metrics.jsonl is a time series of numbers; tables and label lists stay in summary.json."""

from __future__ import annotations

from lmforge.core.metrics import MetricsLogger, numbers, read_metrics


def test_only_numbers_are_logged(tmp_path):
    log = MetricsLogger(tmp_path / "m.jsonl")
    log.log_dict("finetune", {"accuracy": 0.9, "steps": 3, "labels": ["a"], "per_class": {}})
    assert [(e["name"], e["value"]) for e in read_metrics(tmp_path / "m.jsonl")] == [
        ("accuracy", 0.9),
        ("steps", 3),
    ]
    assert numbers({"a": 1, "b": "x", "c": 2.5, "d": None}) == {"a": 1, "c": 2.5}
