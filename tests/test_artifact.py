"""One way to load what a run made: manifests beside saved models, ``load_artifact``, plain peft
on an adapter directory alone, and run directories that still work after being moved."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from helpers import classify_section, local_encoder, write_csv

from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from lmforge.core.manifest import MANIFEST, Manifest, read_manifest, write_manifest
from lmforge.data.builtin import load_builtin
from lmforge.tasks.artifact import inspect_artifact, load_artifact

TOPICS = ["business", "sports", "tech"]  # three classes: a bare encoder's default head has two


@pytest.fixture(scope="module")
def three_topics(tmp_path_factory):
    """A local 1-layer encoder (saved with transformers' default 2-way head) and BBC News
    articles of three topics as train/test CSV files with their own column names."""
    tmp = tmp_path_factory.mktemp("topics")
    docs = [d for d in load_builtin("bbc-news", limit=400) if d.label in TOPICS]
    train, test = docs[:60], docs[60:75]
    base = local_encoder(tmp / "base", [d.text for d in train])
    return base, write_csv(tmp / "train.csv", train), write_csv(tmp / "test.csv", test)


def finetune_run(tmp_path, base, train, test, **finetune):
    recipe = {"name": "art", "finetune": classify_section(base, train, test, **finetune)}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(run)]) == 0
    return run, json.loads((run / "summary.json").read_text())["stages"]["finetune"]["metrics"]


def test_manifest_round_trip_and_refusals(tmp_path):
    m = Manifest(kind="adapter", location="finetune/model", base="finetune/base", task="x")
    write_manifest(tmp_path, m)
    raw = json.loads((tmp_path / MANIFEST).read_text())
    assert list(raw)[:3] == ["format", "lmforge", "kind"]  # plain JSON, version first
    assert read_manifest(tmp_path) == m
    assert m.run_root(tmp_path / "run" / "finetune" / "model") == (tmp_path / "run").resolve()
    assert read_manifest(tmp_path / "nowhere") is None
    (tmp_path / MANIFEST).write_text(json.dumps({**raw, "format": 99}))
    with pytest.raises(LmforgeError, match="newer than this lmforge reads"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(LmforgeError, match="not a readable lmforge manifest"):
        read_manifest(tmp_path)


def test_plain_peft_rebuilds_the_3_class_head_from_the_adapter_dir_alone(three_topics, tmp_path):
    """AutoPeftModelForSequenceClassification builds its head from the base's config: with a
    bare encoder's base that is a 2-way head the 3-way adapter does not fit."""
    from peft import AutoPeftModelForSequenceClassification

    run, metrics = finetune_run(tmp_path, *three_topics)
    adapter = run / "finetune" / "model"
    plain = AutoPeftModelForSequenceClassification.from_pretrained(adapter).eval()  # no kwargs
    assert plain.config.id2label == dict(enumerate(TOPICS))
    art = load_artifact(adapter)
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.no_grad():
        logits = plain(input_ids=ids).logits
        assert logits.shape == (1, 3)
        assert torch.allclose(logits, art.model(input_ids=ids).logits, atol=1e-6)
    # what the manifests say: the adapter's base is the run's own, labels and columns included
    assert (art.kind, art.task.name, art.info.labels) == ("adapter", "classification", TOPICS)
    assert art.base == run / "finetune" / "base" and art.manifest.base == "finetune/base"
    assert art.manifest.columns["text"] == "body" and art.manifest.max_length == 64
    assert read_manifest(run / "finetune" / "base").kind == "base"
    assert metrics["labels"] == TOPICS


def test_a_moved_run_evaluates_without_task_or_columns(three_topics, tmp_path, capsys):
    """Copy a run elsewhere and delete the original: peft's absolute base path is dead, the
    manifest's run-relative one still finds finetune/base; task, labels, columns and max
    length come from the manifest, so `lmforge evaluate DIR --data FILE` needs nothing more."""
    base, train, test = three_topics
    run, metrics = finetune_run(tmp_path, base, train, test, merge=True)
    moved = tmp_path / "elsewhere" / "run-copy"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    capsys.readouterr()
    for kind in ("model", "merged"):
        out = tmp_path / f"ev-{kind}"
        args = ["evaluate", str(moved / "finetune" / kind), "--data", str(test), "--out", str(out)]
        assert main([*args, "--no-profile"]) == 0, capsys.readouterr().err
        summary = json.loads((out / "summary.json").read_text())["evaluate"]
        assert summary["task"] == "classification" and summary["columns"]["label"] == "topic"
        assert summary["metrics"]["accuracy"] == pytest.approx(metrics["accuracy"])
        assert summary["metrics"]["test_examples"] == 15
    assert load_artifact(moved / "finetune" / "model").base == moved / "finetune" / "base"
    # --task is kept, and must agree with the manifest
    args = ["evaluate", str(moved / "finetune" / "model"), "--data", str(test), "--no-profile"]
    assert main([*args, "--task", "token-classification"]) == 1
    assert "fine-tuned for the 'classification' task" in capsys.readouterr().err
    # copying the adapter without the rest of the run names what is missing
    lone = tmp_path / "lone"
    shutil.copytree(moved / "finetune" / "model", lone / "x" / "y")
    with pytest.raises(LmforgeError, match="copy the whole run directory"):
        inspect_artifact(lone / "x" / "y")


@pytest.mark.slow
def test_a_moved_instruction_run_still_generates(tmp_path, capsys):
    """An instruction adapter on a from-scratch llama-tiny (its base in finetune/base) and the
    merged model: both generate from a copy of the run, the original gone."""
    sets = [
        "data.sources.0.limit=150",
        "tokenizer.vocab_size=600",
        "finetune.model={preset: llama-tiny}",
        "finetune.data.limit=40",
        "finetune.epochs=1",
        "finetune.max_length=32",
        "finetune.generation_max_tokens=8",
    ]
    run = tmp_path / "run"
    args = ["run", "instruct", "--out", str(run), *[a for kv in sets for a in ("--set", kv)]]
    assert main(args) == 0, capsys.readouterr().err
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    capsys.readouterr()
    for kind in ("model", "merged"):
        path = str(moved / "finetune" / kind)
        code = main(["generate", path, "--prompt", "Hello", "--max-new-tokens", "4"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert out.startswith("Hello") and len(out.strip()) > len("Hello")
    assert read_manifest(moved / "finetune" / "model").base == "finetune/base"
