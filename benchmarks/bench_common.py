"""Pieces the benchmark scripts share: the worker-subprocess protocol and a throwaway run of
lmforge's pretraining loop.

Benchmarks run each contender in its own subprocess (``sys.executable __file__ --worker ...``)
so its peak RSS and interpreter start-up are its own; the worker prints one line
``BENCH_RESULT {json}`` among whatever the libraries print, and the parent reads it back.

The scripts import this module before they drop ``benchmarks/`` from ``sys.path`` (so that
``benchmarks/peft.py`` does not shadow the peft library); it imports only the standard library
at import time, and lmforge inside the functions that need it.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "  # marks the worker's JSON line among library prints


def print_result(result: dict[str, Any]) -> None:
    """The worker's side: its one result line, flushed before the process ends."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


@dataclass(frozen=True)
class WorkerRun:
    """What a worker subprocess left: its result (None if it failed or printed none)."""

    result: dict[str, Any] | None
    seconds: float  # wall time of the whole process, interpreter start-up included
    returncode: int
    output: str  # its stderr, or stdout when stderr is empty: what to show on failure

    def tail(self, lines: int = 15) -> list[str]:
        return self.output.strip().splitlines()[-lines:]


def call_worker(cmd: list[str], env: dict[str, str]) -> WorkerRun:
    """The parent's side: run ``cmd`` and read back the last result line it printed."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX)) if lines else None
    if proc.returncode:
        result = None
    return WorkerRun(result, seconds, proc.returncode, proc.stderr or proc.stdout)


def write_results(
    path: Path, args: Any, keys: tuple[str, ...], libraries: tuple[str, ...], **payload: Any
) -> None:
    """``{"settings": ..., **payload}`` as indented JSON at ``path``; the settings are the
    command-line values ``keys`` of ``args`` and the versions of ``libraries``, so that a
    results file says what produced it."""
    settings = {k: getattr(args, k) for k in keys}
    settings |= {name: importlib.import_module(name).__version__ for name in libraries}
    path.write_text(json.dumps({"settings": settings, **payload}, indent=2) + "\n")


def train_throwaway(model: Any, cfg: Any, data: Any, device: Any, seed: int, prefix: str) -> Any:
    """lmforge's pretraining loop (``pretrain.loop.train``) on ``data`` (a ``PretrainData``)
    with the pretrain section ``cfg``, as the pretrain stage calls it, in a temporary work
    directory: no metrics file, no resume. Returns the loop's result."""
    from lmforge.core.distributed import DistInfo
    from lmforge.core.metrics import MetricsLogger
    from lmforge.pretrain.loop import train

    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        return train(
            model,
            cfg,
            train_batch=lambda idx, s: data.batch(idx, s, "train"),
            val_batch=lambda idx, s: data.batch(idx, s, "val"),
            num_train=len(data.train),
            num_val=len(data.val),
            tokens_per_sample=cfg.block_size,
            work=Path(work),
            device=device,
            dist=DistInfo(),
            seed=seed,
            metrics=MetricsLogger(Path(work) / "metrics.jsonl", enabled=False),
            resume=False,
            recipe_hash="benchmark",
        )
