"""summary.json and recipe.yaml never show outputs as made from something they were not."""

from __future__ import annotations

import json
import time

import yaml
from runner_tiny import cli, hooked_process, tiny_recipe


def summary(run):
    return json.loads((run / "summary.json").read_text())["stages"]


def run_recipe_yaml(run):
    return yaml.safe_load((run / "recipe.yaml").read_text())


def rerun_killed_when(stage: str, tmp_path, recipe, run, *overrides: str) -> None:
    """Rerun ``recipe`` into ``run`` with ``--set`` each of ``overrides``, in a child that is
    killed with SIGKILL as ``stage`` starts."""
    started = tmp_path / "started"
    started.unlink(missing_ok=True)
    args = ["run", str(recipe), "--out", str(run)]
    args += [arg for override in overrides for arg in ("--set", override)]
    proc = hooked_process(stage, "kill", started, tmp_path / "never", *args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -9 and started.exists(), err[-2000:]


def test_kill_9_of_a_rerun_with_an_edited_recipe_keeps_recipe_and_summary_consistent(
    tmp_path, capsys
):
    recipe = tiny_recipe(tmp_path)
    run = tmp_path / "run"
    assert cli(capsys, "run", str(recipe), "--out", str(run))[0] == 0
    vocab_300 = summary(run)["tokenizer"]["metrics"]["vocab_size"]

    # edited tokenizer, killed while the tokenizer reruns: nothing changed on disk
    rerun_killed_when("tokenizer", tmp_path, recipe, run, "tokenizer.vocab_size=320")
    assert run_recipe_yaml(run)["tokenizer"]["vocab_size"] == 300
    entry = summary(run)["tokenizer"]
    assert entry["status"] == "done" and entry["metrics"]["vocab_size"] == vocab_300

    # edited data too: data completes, then the kill; the old tokenizer is stale, not done
    overrides = ("data.sources.0.limit=150", "tokenizer.vocab_size=320")
    rerun_killed_when("tokenizer", tmp_path, recipe, run, *overrides)
    written = run_recipe_yaml(run)
    assert written["data"]["sources"][0]["limit"] == 150  # data completed with its new section
    assert written["tokenizer"]["vocab_size"] == 300  # what the tokenizer on disk was made from
    stages = summary(run)
    assert stages["data"]["status"] == "done" and stages["data"]["metrics"]["documents_in"] == 150
    assert stages["tokenizer"]["status"] == "stale"
    assert "'data'" in stages["tokenizer"]["stale_because"]


def test_only_data_with_a_changed_config_marks_downstream_stale_until_rerun(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, pretrain={})
    run = tmp_path / "run"
    only = ["--out", str(run), "--only"]
    assert cli(capsys, "run", str(recipe), *only, "data,tokenizer")[0] == 0
    code, out, err = cli(capsys, "run", str(recipe), *only, "data", "--set", "seed=1")
    assert code == 0, err
    stages = summary(run)
    assert stages["data"]["status"] == "done"
    assert stages["tokenizer"]["status"] == "stale"
    (line,) = [x for x in out.splitlines() if x.strip().startswith("tokenizer")]
    assert "stale" in line  # the printed table says so too

    # a stage that reads a stale one is refused under --only, before any work
    code, _, err = cli(capsys, "run", str(recipe), *only, "pretrain", "--set", "seed=1")
    assert code == 1 and "internal error" not in err
    assert "reads the outputs of 'tokenizer', which are stale" in err
    assert "--only tokenizer,pretrain" in err
    assert not (run / ".pretrain.partial").exists()
    assert summary(run)["pretrain"]["status"] == "skipped"

    # a later run reruns the stale stage and it is done again
    code, _, err = cli(capsys, "run", str(recipe), *only, "data,tokenizer", "--set", "seed=1")
    assert code == 0, err
    stages = summary(run)
    assert stages["data"].get("cached") and not stages["tokenizer"].get("cached")
    assert stages["tokenizer"]["status"] == "done" and "stale_because" not in stages["tokenizer"]
    assert run_recipe_yaml(run)["seed"] == 1


def test_restoring_the_upstream_makes_a_stale_stage_done_again(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    run = tmp_path / "run"
    assert cli(capsys, "run", str(recipe), "--out", str(run))[0] == 0
    limit = ["--set", "data.sources.0.limit=150"]
    assert cli(capsys, "run", str(recipe), "--out", str(run), "--only", "data", *limit)[0] == 0
    assert summary(run)["tokenizer"]["status"] == "stale"
    time.sleep(0.01)
    assert cli(capsys, "run", str(recipe), "--out", str(run), "--only", "data")[0] == 0
    assert summary(run)["tokenizer"]["status"] == "done"  # made from exactly this data again
    assert run_recipe_yaml(run)["data"]["sources"][0].get("limit") is None
