"""The command line, end to end on real data at tiny size."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import E2E_OVERRIDES, TINY

from lmforge.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write_recipe(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_validate_accepts_builtin_and_rejects_typo_without_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "validate", "quickstart")[0] == 0
    raw = yaml.safe_load(run_cli(capsys, "recipes", "show", "quickstart")[1])
    raw["data"]["dedup"]["treshold"] = 0.9
    recipe = write_recipe(tmp_path / "typo.yaml", raw)
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 1
    assert "data.dedup.treshold: unknown key; did you mean 'threshold'?" in err
    assert "Traceback" not in err
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 1 and "treshold" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typo.yaml"]  # nothing written


def test_recipes_list_and_show(capsys):
    code, out, _ = run_cli(capsys, "recipes")
    assert code == 0 and "quickstart" in out and "tokenizer-zh" in out
    code, out, _ = run_cli(capsys, "recipes", "show", "tokenizer-zh")
    assert code == 0 and yaml.safe_load(out)["name"] == "tokenizer-zh"
    code, _, err = run_cli(capsys, "recipes", "show", "quikstart")
    assert code == 1 and "did you mean 'quickstart'" in err


def test_datasets_lists_licence_and_source(capsys):
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0
    for name in [
        "shakespeare",
        "bbc-news",
        "wiki-en",
        "zh-sentiment",
        "peoples-daily-ner",
        "digits",
    ]:
        assert name in out
    assert out.count("licence:") >= 6 and out.count("source:") >= 6


def test_schema_prints_keys_with_descriptions(capsys):
    code, out, _ = run_cli(capsys, "schema", "data.dedup")
    assert code == 0
    assert "data.dedup.threshold: float = 0.8" in out and "Jaccard" in out
    assert run_cli(capsys, "schema", "nope")[0] == 1


def test_run_data_and_tokenizer_then_reuse_then_force(tmp_path, capsys):
    out_dir = tmp_path / "D"
    code, out, err = run_cli(
        capsys, "run", "quickstart", "--only", "data,tokenizer", "--out", str(out_dir), *TINY
    )
    assert code == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["name"] == "quickstart"
    for stage in ("data", "tokenizer"):
        entry = summary["stages"][stage]
        assert entry["status"] == "done" and entry["seconds"] > 0
        assert all((out_dir / p).exists() for p in entry["artifacts"].values())
    assert summary["stages"]["data"]["artifacts"]["stats"] == "data/stats.json"
    stats = json.loads((out_dir / "data" / "stats.json").read_text())
    assert stats["documents_in"] == 150 and [s["step"] for s in stats["steps"]][0] == "load"
    recipe = yaml.safe_load((out_dir / "recipe.yaml").read_text())
    assert recipe["seed"] == 0 and recipe["data"]["sources"][0]["limit"] == 150
    assert {"lmforge", "torch", "transformers"} <= set(recipe["versions"])
    events = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert {e["stage"] for e in events} == {"data", "tokenizer"}

    # a plain-transformers process loads the tokenizer
    code_ = (
        "from transformers import AutoTokenizer\n"
        f"t = AutoTokenizer.from_pretrained({str(out_dir / 'tokenizer')!r})\n"
        "s = 'Shares in the firm rose 5%.'\n"
        "assert t.decode(t(s)['input_ids']) == s\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code_], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr

    # same inputs: both stages reused; --force redoes them; a changed key redoes data and below
    run_cli(capsys, "run", "quickstart", "--only", "data,tokenizer", "--out", str(out_dir), *TINY)
    stages = json.loads((out_dir / "summary.json").read_text())["stages"]
    assert stages["data"]["cached"] and stages["tokenizer"]["cached"]
    run_cli(capsys, "run", "quickstart", "--out", str(out_dir), "--force", *TINY)
    stages = json.loads((out_dir / "summary.json").read_text())["stages"]
    assert not stages["data"].get("cached") and not stages["tokenizer"].get("cached")
    run_cli(
        capsys,
        "run",
        "quickstart",
        "--out",
        str(out_dir),
        *TINY,
        "--set",
        "tokenizer.vocab_size=700",
    )
    stages = json.loads((out_dir / "summary.json").read_text())["stages"]
    assert stages["data"]["cached"] and not stages["tokenizer"].get("cached")
    assert stages["tokenizer"]["metrics"]["vocab_size"] == 700


def test_failing_stage_is_recorded_and_leaves_no_half_written_dir(tmp_path, capsys):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("short\nlines\n", encoding="utf-8")
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {
            "name": "fail",
            "data": {
                "sources": [{"path": str(corpus), "txt_unit": "line"}],
                "clean": {"min_chars": 100},
            },
        },
    )
    out_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", str(recipe), "--out", str(out_dir))
    assert code == 1
    assert "'length' filter removed all 2 documents" in err and "min_chars=100" in err
    assert "Traceback" not in err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["stages"]["data"]["status"] == "failed"
    # no recipe.yaml: it describes completed stages only, and none completed; the report
    # says the stage failed
    assert sorted(p.name for p in out_dir.iterdir()) == [
        ".lmforge-run",
        ".lmforge-run.lock",
        "metrics.jsonl",
        "report.html",
        "summary.json",
    ]


def test_only_rejects_unknown_or_unconfigured_stage(capsys):
    code, _, err = run_cli(capsys, "run", "quickstart", "--only", "tokeniser")
    assert code == 1 and "did you mean 'tokenizer'" in err
    from lmforge.stages import PLANNED_STAGES

    for planned in PLANNED_STAGES[:1]:  # a reserved stage name is refused as not available
        code, _, err = run_cli(capsys, "run", "quickstart", "--only", planned)
        assert code == 1 and "not available" in err
    code, _, err = run_cli(capsys, "run", "tokenizer-zh", "--only", "evaluate")
    assert code == 1 and "has no 'evaluate' section" in err


def test_resume_picks_latest_run_of_the_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run", "quickstart", "--resume")
    assert code == 1 and "no earlier run" in err
    assert run_cli(capsys, "data", "quickstart", "--set", "data.sources.0.limit=60")[0] == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("quickstart-")
    code, out, _ = run_cli(
        capsys,
        "run",
        "quickstart",
        "--resume",
        *TINY,
        "--set",
        "data.sources.0.limit=60",
        "--set",
        "tokenizer.vocab_size=600",
    )
    assert code == 0 and str(run_dir.name) in out
    stages = json.loads((run_dir / "summary.json").read_text())["stages"]
    assert stages["data"]["cached"] and stages["tokenizer"]["status"] == "done"


def test_debug_shows_traceback_and_console_script_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsed: 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "lmforge", "validate", str(bad)], capture_output=True, text=True
    )
    assert (
        done.returncode == 1
        and "did you mean 'seed'" in done.stderr
        and "Traceback" not in done.stderr
    )
    done = subprocess.run(
        [sys.executable, "-m", "lmforge", "--debug", "validate", str(bad)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "Traceback" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "lmforge", "run", "--bogus"], capture_output=True, text=True
    )
    assert done.returncode == 2


def test_every_builtin_recipe_has_an_end_to_end_test():
    from lmforge.recipe import builtin_recipes

    assert sorted(builtin_recipes()) == sorted(E2E_OVERRIDES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(E2E_OVERRIDES))
def test_builtin_recipe_end_to_end_at_tiny_size(tmp_path, capsys, name):
    sets = [arg for kv in E2E_OVERRIDES[name] for arg in ("--set", kv)]
    code, out, err = run_cli(capsys, "run", name, "--out", str(tmp_path), *sets)
    assert code == 0, err
    # every run ends on its report and its headline numbers
    assert f"report: {tmp_path / 'report.html'}" in out and "headline: " in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(s["status"] == "done" for s in summary["stages"].values())
    for stage in summary["stages"].values():  # every artifact the summary names exists
        assert all((tmp_path / p).exists() for p in stage["artifacts"].values())
    stages = summary["stages"]
    if "tokenizer" in stages:
        assert stages["tokenizer"]["metrics"]["unk_rate"] < 0.01
    if "finetune" in stages:  # the task's main metric, as summary.json reports it
        from lmforge.recipe import load_recipe
        from lmforge.tasks import TASKS

        task = TASKS.get(load_recipe(name).finetune.task)
        assert math.isfinite(stages["finetune"]["metrics"][task.main_metric])
    if "evaluate" in stages:
        assert stages["evaluate"]["metrics"]["size_mb"] > 0
        assert stages["evaluate"]["metrics"]["latency_ms_b1"] > 0
    if "pretrain" in summary["stages"]:
        assert math.isfinite(summary["stages"]["pretrain"]["metrics"]["val_loss"])
        assert (tmp_path / "pretrain" / "model" / "model.safetensors").exists()
        assert list((tmp_path / "pretrain" / "tensorboard").glob("events.out.tfevents.*"))


def test_readme_documents_every_command():
    import re

    import typer

    from lmforge.cli import app

    group = typer.main.get_group(app)
    commands = {f"lmforge {name}" for name in group.commands if name != "recipes"}
    commands |= {"lmforge recipes", "lmforge recipes show"}
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(lmforge [a-z]+(?: show)?)", readme, flags=re.M))
    table |= set(re.findall(r"`(lmforge recipes show)", readme))
    assert commands <= table, commands - table


def test_a_library_warning_on_the_root_logger_does_not_double_lmforge_lines():
    code = (
        "import logging; from lmforge.cli import _setup_logging; _setup_logging(False); "
        "logging.warning('from a library'); from lmforge.core.log import logger; "
        "logger.info('hello')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.count("hello") == 1, done.stderr
    assert "from a library" in done.stderr
