"""SIGTERM (what schedulers, `docker stop` and `kill` send) is handled like Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from runner_tiny import cli, lmforge_process, tiny_recipe

STEPS = 60  # far more than are done before the signal (steps take milliseconds)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_pretraining_is_recorded_and_the_partial_work_kept(
    tmp_path, capsys, one_thread, sig
):
    recipe = tiny_recipe(
        tmp_path, pretrain={"max_steps": STEPS, "checkpoint_every": 10, "eval_every": STEPS}
    )
    run = tmp_path / "run"
    proc = lmforge_process("run", str(recipe), "--out", str(run), stderr=subprocess.PIPE, text=True)
    checkpoint = run / ".pretrain.partial" / "checkpoints" / "step-00000010" / "trainer_state.json"
    try:
        deadline = time.time() + 120
        while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert checkpoint.exists() and proc.poll() is None, "never reached step 10"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "internal error" not in err and "Traceback" not in err, err[-2000:]
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err[-2000:]
    entry = json.loads((run / "summary.json").read_text())["stages"]["pretrain"]
    assert entry["status"] == "interrupted", entry
    assert entry["error"] == (
        "stopped by SIGTERM" if sig == signal.SIGTERM else "interrupted (Ctrl-C)"
    )
    assert checkpoint.exists() and not (run / "pretrain").exists()
    assert not (run / ".lmforge-run.lock").read_text()  # the lock was let go

    if sig == signal.SIGTERM:  # the kept work continues exactly where it stopped
        code, _, err = cli(capsys, "run", str(recipe), "--out", str(run), "--resume")
        assert code == 0, err
        metrics = json.loads((run / "summary.json").read_text())["stages"]["pretrain"]["metrics"]
        assert metrics["resumed_from_step"] >= 10 and metrics["steps"] == STEPS
