"""The compress stage end to end on a tiny fine-tuned BERT: every method really did what it
says, every artefact reloads without lmforge, and pareto.json scores them all side by side."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from helpers import classify_section, tiny_bert, trained_tokenizer, write_csv

from lmforge.cli import main
from lmforge.data.builtin import load_builtin

# one fine-tune, seven steps, eight profiled artefacts: minutes on a busy 2-core machine
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

STEPS = [
    {"method": "export", "format": "onnx", "name": "onnx"},
    {"method": "quantize", "name": "int8-ort"},  # reads the ONNX model above
    {"method": "quantize", "engine": "torch", "input": "source", "name": "int8-torch"},
    {"method": "quantize", "scheme": "bf16", "input": "source", "name": "bf16"},
    {
        "method": "prune",
        "kind": "magnitude",
        "sparsity": 0.5,
        "input": "source",
        "name": "sparse",
    },
    {
        "method": "prune",
        "kind": "neurons",
        "sparsity": 0.5,
        "recovery_epochs": 1,
        "input": "source",
        "name": "neurons",
    },
    {"method": "distill", "epochs": 1, "input": "source", "name": "student"},
]


def tiny_classifier_dir(path: Path, texts: list[str]) -> Path:
    """A 4-layer BERT 32 wide with its tokenizer: distillation keeps layers 0 and 2."""
    trained_tokenizer(texts, vocab_size=800).save_pretrained(path)
    tiny_bert(vocab_size=800, num_hidden_layers=4).save_pretrained(path)
    return path


def recipe(base: Path, train: Path, test: Path, steps: list[dict] | None) -> dict:
    out = {
        "name": "cmp",
        "finetune": classify_section(base, train, test, method="full", lr=1e-3, max_length=48),
    }
    if steps is not None:
        out["compress"] = {
            "steps": steps,
            "latency_batch_sizes": [1, 4],
            "latency_repeats": 3,
        }
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compress")
    docs = load_builtin("bbc-news", limit=100)
    base = tiny_classifier_dir(tmp / "base", [d.text for d in docs[:80]])
    return (
        base,
        write_csv(tmp / "train.csv", docs[:80]),
        write_csv(tmp / "test.csv", docs[80:]),
    )


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    """The fine-tune first, then the same run with the compress section added."""
    tmp = tmp_path_factory.mktemp("run")
    out = tmp / "run"
    (tmp / "ft.yaml").write_text(yaml.safe_dump(recipe(*files, None)))
    assert main(["run", str(tmp / "ft.yaml"), "--out", str(out)]) == 0
    before = digest(out / "finetune" / "model")
    (tmp / "c.yaml").write_text(yaml.safe_dump(recipe(*files, STEPS)))
    assert main(["run", str(tmp / "c.yaml"), "--out", str(out)]) == 0
    assert digest(out / "finetune" / "model") == before  # the source is never modified
    pareto = json.loads((out / "compress" / "pareto.json").read_text())
    return out, {p["name"]: p for p in pareto["artefacts"]}


def test_every_artefact_is_scored_side_by_side(run):
    out, points = run
    assert list(points) == ["source", *(s["name"] for s in STEPS)]
    for name, p in points.items():
        for key in ("quality", "accuracy", "params", "size_mb", "peak_rss_mb"):
            assert p[key] > 0, (name, key)
        for b in (1, 4):
            assert 0 < p[f"latency_ms_p50_b{b}"] <= p[f"latency_ms_p95_b{b}"], name
            assert p[f"examples_per_s_b{b}"] > 0
    assert any(p["pareto"] for p in points.values())
    assert (out / "compress" / "tradeoff.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())["stages"]["compress"]
    assert summary["status"] == "done" and summary["metrics"]["source"]["quality"] > 0


def test_onnx_runs_in_plain_onnxruntime_with_any_batch_and_length(run):
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, points = run
    onnx_dir, source = out / "compress" / "onnx", out / "finetune" / "model"
    assert points["onnx"]["step"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(onnx_dir / "model.onnx"))
    tokenizer = AutoTokenizer.from_pretrained(onnx_dir)
    model = AutoModelForSequenceClassification.from_pretrained(source).eval()
    for texts in (
        ["one short text"],
        ["a", "a longer text with more words in it", "b c"],
    ):
        enc = tokenizer(texts, padding=True, return_tensors="np")
        got = session.run(["logits"], {k: enc[k] for k in ("input_ids", "attention_mask")})[0]
        with torch.no_grad():
            ref = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
        assert np.abs(got - ref).max() <= 1e-4
    assert json.loads((onnx_dir / "lmforge.json").read_text())["settings"]["format"] == "onnx"
    assert points["onnx"]["accuracy"] == pytest.approx(points["source"]["accuracy"])


def test_int8_kernels_are_used(run):
    import onnx

    out, points = run
    graph = onnx.load(str(out / "compress" / "int8-ort" / "model.onnx")).graph
    assert (
        sum(n.op_type == "MatMulInteger" for n in graph.node)
        == points["int8-ort"]["step"]["int8_matmuls"]
        > 0
    )
    assert points["int8-ort"]["size_mb"] < points["onnx"]["size_mb"]
    torch_int8 = points["int8-torch"]["step"]
    assert torch_int8["int8_modules"] > 0 and "linear_dynamic" in torch_int8["kernel"]
    assert points["int8-torch"]["params"] == points["source"]["params"]  # packed weights counted


def test_int8_torch_and_bf16_reload(run):
    import torch
    from transformers import AutoModelForSequenceClassification

    from lmforge.compress.artifact import load_compressed

    out, _ = run
    model = load_compressed(out / "compress" / "int8-torch")[0]
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    bf16 = AutoModelForSequenceClassification.from_pretrained(out / "compress" / "bf16")
    assert next(bf16.parameters()).dtype == torch.bfloat16


def test_magnitude_pruning_leaves_real_zeros_in_a_plain_transformers_model(run):
    import torch
    from transformers import AutoModelForSequenceClassification

    out, points = run
    model = AutoModelForSequenceClassification.from_pretrained(out / "compress" / "sparse")
    weights = [m.weight for m in model.bert.modules() if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.5, abs=0.01)
    assert points["sparse"]["step"]["sparsity"] == pytest.approx(zeros)


def test_neuron_pruning_shrinks_the_saved_model(run):
    from transformers import AutoModelForSequenceClassification

    out, points = run
    model = AutoModelForSequenceClassification.from_pretrained(out / "compress" / "neurons")
    assert model.config.intermediate_size == 32  # 64 -> 32
    assert model.bert.encoder.layer[0].intermediate.dense.out_features == 32
    assert points["neurons"]["params"] < points["source"]["params"]
    assert points["neurons"]["size_mb"] < points["source"]["size_mb"]


def test_distilled_student_keeps_every_other_layer(run):
    from transformers import AutoModelForSequenceClassification

    from lmforge.tasks.artifact import load_artifact

    out, points = run
    student = AutoModelForSequenceClassification.from_pretrained(out / "compress" / "student")
    assert student.config.num_hidden_layers == 2
    assert points["student"]["step"]["param_ratio"] < 1
    art = load_artifact(out / "compress" / "student")  # the manifest travels with it
    assert art.task.name == "classification" and art.info.labels == sorted(art.info.labels)
