"""A run whose compress stage made a faster artefact that keeps its quality serves that one."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import Served, save_classifier

from lmforge.serve import runners
from lmforge.serve.loader import load_served, pick_artifact


def compressed_run(root, texts, *, quality_delta=0.0, status="done"):
    """finetune/merged + compress/int8 (torch dynamic int8, as compress's quantize step saves
    it), with the pareto.json and summary.json the compress stage writes."""
    import torch

    from lmforge.compress.artifact import TORCH_INT8_FILE, artifact_format, save_compressed
    from lmforge.compress.quantize import quantize_torch
    from lmforge.tasks.artifact import load_artifact

    merged = save_classifier(root / "finetune" / "merged", texts)
    art = load_artifact(merged)
    out = root / "compress" / "int8"
    out.mkdir(parents=True)
    torch.save(quantize_torch(art.model, ["Linear"]).state_dict(), out / TORCH_INT8_FILE)
    art.processor.save_pretrained(out)
    art.model.config.save_pretrained(out)
    save_compressed(out, artifact_format(merged), "torch-int8", "compress/int8", modules=["Linear"])
    points = [
        {"name": "source", "format": "transformers", "path": "finetune", "quality": 0.8,
         "quality_delta": 0.0, "pareto": True, "latency_ms_p50_b1": 4.0, "size_mb": 2.0},
        {"name": "int8", "format": "torch-int8", "path": "compress/int8", "pareto": True,
         "quality": 0.8 + quality_delta, "quality_delta": quality_delta, "speedup_b1": 2.0,
         "latency_ms_p50_b1": 2.0, "size_mb": 0.6, "size_ratio": 0.3},
        {"name": "gguf", "format": "gguf", "path": "compress/gguf", "pareto": True,
         "quality_delta": 0.0, "latency_ms_p50_b1": 1.0},
    ]  # fmt: skip
    (root / "compress" / "pareto.json").write_text(json.dumps({"artefacts": points}))
    stages = {"finetune": {"status": "done"}, "compress": {"status": status}}
    (root / "summary.json").write_text(json.dumps({"stages": stages}))
    return root


def test_the_compressed_artefact_is_served_and_named_in_health(tmp_path, texts):
    run = compressed_run(tmp_path / "run", texts)
    path, why = pick_artifact(run)
    assert path == run / "compress" / "int8"
    assert "compressed from finetune/merged" in why and "--uncompressed" in why
    assert pick_artifact(run, uncompressed=True)[0] == run / "finetune" / "merged"
    small, full = load_served(run), load_served(run, uncompressed=True)
    assert (small.artifact, small.format) == ("compress/int8", "torch-int8")
    assert (full.artifact, full.format) == ("finetune/merged", "transformers")
    sample = [t[:200] for t in texts[:6]]
    a, b = runners.classify(small, sample), runners.classify(full, sample)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    served = Served(run)
    try:
        health = httpx.get(served.url + "/health").json()
        assert (health["artifact"], health["format"]) == ("compress/int8", "torch-int8")
        card = httpx.get(served.url + "/v1/models").json()["data"][0]
        assert card["artifact"] == "compress/int8" and card["id"] == "run"
        r = httpx.post(served.url + "/v1/classify", json={"texts": sample[:2]}, timeout=60)
        assert r.status_code == 200 and len(r.json()["results"]) == 2
        assert "serving compress/int8 of the run" in served.log.read_text()
    finally:
        served.stop()


@pytest.mark.parametrize(
    ("delta", "status", "reason"),
    [
        (-0.05, "done", "no compress artefact keeps its quality"),
        (0.0, "stale", "compress is stale"),  # after lmforge improve: the old model compressed
    ],
)
def test_a_lossy_or_stale_compressed_artefact_is_not_served(tmp_path, texts, delta, status, reason):
    run = compressed_run(tmp_path / "run", texts, quality_delta=delta, status=status)
    path, why = pick_artifact(run)
    assert path == run / "finetune" / "merged" and reason in why


def test_uncompressed_flag_reaches_the_loader(monkeypatch, tmp_path):
    from lmforge.cli import main

    seen = {}
    monkeypatch.setattr("lmforge.serve.run.serve", lambda target, **kw: seen.update(kw))
    assert main(["serve", str(tmp_path), "--uncompressed"]) == 0
    assert seen["uncompressed"] is True
