"""``lmforge serve --precision``: the model thread computes in the precision asked for (bf16
autocast where it is measured faster), answers as fp32 does, and refuses what cannot apply."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from fastapi.testclient import TestClient

from lmforge.core import precision as precision_mod
from lmforge.core.errors import LmforgeError
from lmforge.serve.app import build_app, serving_precision
from lmforge.serve.guard import Settings
from lmforge.serve.loader import load_served

TEXTS = ["the markets rallied after the bank cut rates", "the striker scored twice in the final"]


def _classify(classifier, tmp_path, precision: str) -> tuple[dict, dict, list[torch.dtype]]:
    """/health and /v1/classify of an in-process server, and the dtypes the encoder computed."""
    sm = load_served(classifier)
    seen: list[torch.dtype] = []
    layer = sm.model.bert.encoder.layer[0].intermediate.dense
    handle = layer.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    app = build_app(sm, Settings(precision=precision), tmp_path / f"{precision}.sqlite")
    try:
        with TestClient(app) as client:
            health = client.get("/health").json()
            reply = client.post("/v1/classify", json={"texts": TEXTS})
            assert reply.status_code == 200, reply.text
    finally:
        handle.remove()
    return health, reply.json(), seen


def test_bf16_runs_the_model_under_autocast_and_answers_as_fp32(classifier, tmp_path):
    health32, out32, seen32 = _classify(classifier, tmp_path, "fp32")
    health16, out16, seen16 = _classify(classifier, tmp_path, "bf16")
    assert health32["precision"] == "fp32" and seen32 == [torch.float32]
    assert health16["precision"] == "bf16" and seen16 == [torch.bfloat16]
    for a, b in zip(out32["results"], out16["results"], strict=True):
        assert a["label"] == b["label"]
        for name, p in a["scores"].items():
            assert b["scores"][name] == pytest.approx(p, abs=0.02)


@pytest.mark.parametrize(
    ("fp32_s", "bf16_s", "chosen"), [(2e-3, 1e-3, "bf16"), (1e-3, 2e-3, "fp32")]
)
def test_auto_takes_the_precision_measured_faster(classifier, monkeypatch, fp32_s, bf16_s, chosen):
    monkeypatch.setattr(precision_mod, "probe_precision", lambda *a: (fp32_s, bf16_s))
    sm = load_served(classifier)
    choice = serving_precision(sm, Settings(precision="auto"))
    assert choice.precision == chosen
    assert (choice.fp32_seconds, choice.bf16_seconds) == (fp32_s, bf16_s)


def test_an_exported_artefact_refuses_bf16_and_auto_keeps_fp32(classifier):
    onnx = dataclasses.replace(load_served(classifier), format="onnx", artifact="compress/onnx")
    with pytest.raises(
        LmforgeError, match=r"--precision bf16: compress/onnx \(onnx\) runs as it was exported"
    ):
        serving_precision(onnx, Settings(precision="bf16"))
    assert serving_precision(onnx, Settings(precision="auto")).precision == "fp32"


def test_fp16_on_a_cpu_and_an_unknown_precision_are_refused(classifier):
    with pytest.raises(LmforgeError, match="fp16 needs a CUDA GPU"):
        serving_precision(load_served(classifier), Settings(precision="fp16"))
    cmd = [sys.executable, "-m", "lmforge", "serve", str(classifier), "--precision", "int3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--precision" in done.stderr and "'int3' is not one of" in done.stderr
