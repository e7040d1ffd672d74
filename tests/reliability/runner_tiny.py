"""Tiny recipes and process helpers for the run-directory reliability tests.

A data + tokenizer run on 200 short local lines takes about a second in process.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import pretrain_section

from lmforge.cli import main

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "from"]

TINY_PRETRAIN = pretrain_section(eval_batches=1)


def write_corpus(path: Path, lines: int = 200) -> Path:
    rng = random.Random(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(14)) for _ in range(lines))
    path.write_text(text + "\n", encoding="utf-8")
    return path


def tiny_recipe(
    folder: Path,
    name: str = "tiny",
    pretrain: dict | None = None,
    file: str | None = None,
    **over,
) -> Path:
    """Write ``folder/<name>.yaml`` (data from a local corpus, a 300-entry tokenizer)."""
    corpus = write_corpus(folder / "corpus.txt")
    raw: dict = {
        "name": name,
        "data": {
            "sources": [{"path": str(corpus), "txt_unit": "line"}],
            "dedup": {"near": False},
            "split": {"val": 0.1, "test": 0.0},
        },
        "tokenizer": {"vocab_size": 300},
    }
    if pretrain is not None:
        raw["pretrain"] = {**TINY_PRETRAIN, **pretrain}
    raw.update(over)
    path = folder / (file or f"{name}.yaml")
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``lmforge ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# Runs `lmforge ARGS` in a child process whose stage STAGE first touches STARTED, then either
# kills its own process with SIGKILL ("kill") or waits until RELEASE exists ("wait").
_HOOKED = """
import dataclasses, os, signal, sys, time
from pathlib import Path
from lmforge import stages
stage, action, started, release, *args = sys.argv[1:]
spec = stages.STAGE_SPECS[stage]
def hooked(ctx, out):
    Path(started).touch()
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    while not Path(release).exists():
        time.sleep(0.02)
    return spec.run(ctx, out)
stages.STAGE_SPECS[stage] = dataclasses.replace(spec, run=hooked)
from lmforge.cli import main
sys.exit(main(args))
"""


def _interruptible() -> None:
    """In the child before exec: Ctrl-C does what it does in a terminal. A test runner started
    as a background job (`cmd &` in a script, as CI may) inherits SIGINT *ignored*, and a
    Python started with SIGINT ignored never turns it into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def lmforge_process(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "LMFORGE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lmforge", *args], env=env, preexec_fn=_interruptible, **kw
    )


def hooked_process(
    stage: str, action: str, started: Path, release: Path, *args: str
) -> subprocess.Popen:
    """``lmforge ARGS`` in a child that stops (``kill``: SIGKILL; ``wait``) when ``stage`` starts."""
    env = {**os.environ, "LMFORGE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _HOOKED, stage, action, str(started), str(release), *args]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
