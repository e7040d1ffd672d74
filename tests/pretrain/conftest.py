"""Run directories with data and tokenizer stages done once, copied into each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pretrain_tiny import base_recipe, write_recipe

from lmforge.cli import main


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> dict[str, Path]:
    """kind -> a run dir whose data and tokenizer stages are complete."""
    out = {}
    for kind in ("bpe", "wordpiece"):
        root = tmp_path_factory.mktemp(f"base-{kind}")
        recipe = write_recipe(root / "recipe-in.yaml", base_recipe(kind))
        assert main(["run", str(recipe), "--out", str(root / "run")]) == 0
        out[kind] = root / "run"
    return out


@pytest.fixture
def run_dir(prepared, tmp_path):
    """Copy a prepared run dir: ``run_dir("bpe")`` -> path whose data/tokenizer are reusable."""

    def make(kind: str = "bpe", name: str = "run") -> Path:
        dest = tmp_path / name
        shutil.copytree(prepared[kind], dest)
        return dest

    return make
