"""A run ends on three numbers: quality, cost to run, and how it trained."""

from __future__ import annotations

from lmforge.report.headlines import headline_numbers


def _stage(**metrics):
    return {"status": "done", "metrics": metrics}


def test_one_number_of_each_kind_the_run_has():
    summary = {
        "stages": {
            "data": _stage(documents_out=2068),
            "pretrain": _stage(val_loss=6.1),
            "finetune": _stage(accuracy=0.975, trainable_fraction=0.0033),
            "evaluate": _stage(accuracy=0.97, latency_ms_b1=42.0, size_mb=91.6),
        }
    }
    assert headline_numbers(summary) == [
        "test accuracy 97.0%",
        "latency at batch 1 42.0 ms",
        "pretraining val loss 6.100",
    ]


def test_failed_stages_and_missing_kinds_give_no_number():
    summary = {
        "stages": {
            "data": _stage(documents_out=2068),
            "finetune": {"status": "failed", "metrics": {"accuracy": 0.2}},
        }
    }
    assert headline_numbers(summary) == ["documents kept 2,068"]


def test_ner_and_qa_f1_each_on_their_own_scale():
    """seqeval's entity F1 is a fraction, SQuAD's F1 a percentage: both read as themselves."""
    ner = {"stages": {"finetune": _stage(f1=0.9264, token_accuracy=0.993)}}
    qa = {"stages": {"finetune": _stage(f1=71.25, exact_match=60.0)}}
    assert headline_numbers(ner) == ["entity F1 0.926"]
    assert headline_numbers(qa) == ["F1 71.2"]
