"""pretrain.precision: auto picks the precision a probe measures faster, and the run records it."""

from __future__ import annotations

import json

import pytest
import torch
from pretrain_tiny import base_recipe, pretrain_section, write_recipe

from lmforge.cli import main
from lmforge.core import precision as precision_mod
from lmforge.core.precision import probe_precision, resolve_precision


def test_auto_resolves_to_fp32_or_bf16_on_this_machine_and_probes_once():
    probe_precision.cache_clear()
    choice = resolve_precision("auto", torch.device("cpu"), tokens=64, hidden=32)
    assert choice.requested == "auto" and choice.precision in ("fp32", "bf16")
    assert choice.fp32_seconds > 0 and choice.bf16_seconds > 0
    faster = "bf16" if choice.bf16_seconds < choice.fp32_seconds else "fp32"
    assert choice.precision == faster
    again = resolve_precision("auto", torch.device("cpu"), tokens=64, hidden=32)
    assert again == choice  # cached per process and shape: the same answer, no second probe
    assert probe_precision.cache_info().hits >= 1
    assert choice.metrics()["precision"] == choice.precision


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [(2.0, 1.0, "bf16"), (1.0, 2.0, "fp32")])
def test_auto_keeps_the_faster(monkeypatch, fp32, bf16, expected):
    monkeypatch.setattr(precision_mod, "probe_precision", lambda *a: (fp32, bf16))
    assert resolve_precision("auto", torch.device("cpu"), 8, 8).precision == expected


def test_explicit_precision_is_used_as_given_without_a_probe(monkeypatch):
    def no_probe(*_):
        raise AssertionError("an explicit precision must not be probed")

    monkeypatch.setattr(precision_mod, "probe_precision", no_probe)
    choice = resolve_precision("fp32", torch.device("cpu"), 8, 8)
    assert choice.precision == "fp32" and choice.metrics() == {"precision": "fp32"}


def test_the_run_records_the_resolved_precision(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision_mod, "probe_precision", lambda *a: (3e-3, 1e-3))
    run = run_dir("bpe")
    raw = {**base_recipe("bpe"), "pretrain": pretrain_section(precision="auto", max_steps=4)}
    recipe = write_recipe(tmp_path / "r.yaml", raw)
    assert main(["run", str(recipe), "--out", str(run)]) == 0
    metrics = json.loads((run / "summary.json").read_text())["stages"]["pretrain"]["metrics"]
    assert metrics["precision"] == "bf16"  # the faster of the probe's two
    assert metrics["precision_probe_fp32_ms"] == pytest.approx(3.0)
    assert metrics["precision_probe_bf16_ms"] == pytest.approx(1.0)
