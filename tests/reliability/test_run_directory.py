"""What lmforge may do to a run directory: only its own folders, one writer, clear errors."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
import time
from pathlib import Path

import pytest
from runner_tiny import cli, hooked_process, tiny_recipe

from lmforge.stages import STAGE_SPECS


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_out_dot_in_a_folder_holding_the_recipes_input_deletes_nothing(
    tmp_path, monkeypatch, capsys
):
    # the user's project: data/corpus.csv is the recipe's input, recipe.yaml their own file
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.csv").write_text(
        "text\n" + "\n".join(f"line number {i} of the corpus" for i in range(50)) + "\n"
    )
    (tmp_path / "recipe.yaml").write_text("# my notes\n")
    (tmp_path / "my.yaml").write_text(
        "name: mine\ndata:\n  sources: [{path: data/corpus.csv}]\n  dedup: {near: false}\n"
    )
    before = tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    for out in (".", "", str(tmp_path)):
        code, _, err = cli(capsys, "run", "my.yaml", "--out", out)
        assert code == 1, err
        assert "internal error" not in err
        assert "--out" in err
    assert tree(tmp_path) == before  # nothing deleted, overwritten or added
    code, _, err = cli(capsys, "run", "my.yaml", "--out", ".")
    assert "is not an lmforge run directory" in err and "data" in err


def test_an_empty_folder_and_an_earlier_run_are_accepted(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, tokenizer=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "run", str(recipe), "--out", str(empty))[0] == 0
    code, _, err = cli(capsys, "run", str(recipe), "--out", str(empty))
    assert code == 0, err
    summary = json.loads((empty / "summary.json").read_text())
    assert summary["stages"]["data"]["cached"]


def test_a_run_made_before_the_marker_is_still_usable(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, tokenizer=None)
    run = tmp_path / "run"
    assert cli(capsys, "run", str(recipe), "--out", str(run))[0] == 0
    (run / ".lmforge-run").unlink()  # as an earlier lmforge version left it
    (run / ".lmforge-run.lock").unlink()
    code, _, err = cli(capsys, "run", str(recipe), "--out", str(run))
    assert code == 0, err
    assert (run / ".lmforge-run").exists()


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    target = tmp_path / "taken"
    target.write_text("mine")
    code, _, err = cli(capsys, "run", str(recipe), "--out", str(target))
    assert code == 1 and "internal error" not in err
    assert "is a file" in err
    assert target.read_text() == "mine"


def test_read_only_out_is_a_clear_error(tmp_path, monkeypatch, capsys):
    recipe = tiny_recipe(tmp_path)
    out = tmp_path / "ro"
    out.mkdir()
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):  # as on a read-only mount
        if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    code, _, err = cli(capsys, "run", str(recipe), "--out", str(out))
    monkeypatch.undo()
    assert code == 1 and "internal error" not in err
    assert "cannot write the run directory" in err and "Read-only file system" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_a_clear_error(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, _, err = cli(capsys, "run", str(recipe), "--out", str(out))
    finally:
        out.chmod(0o755)
    assert code == 1 and "internal error" not in err and "Permission denied" in err


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"),
    ],
    ids=["oserror", "wrapped"],
)
def test_disk_full_names_the_stage_and_the_path(tmp_path, monkeypatch, capsys, error):
    recipe = tiny_recipe(tmp_path)
    run = tmp_path / "run"
    spec = STAGE_SPECS["tokenizer"]

    def full(ctx, out):
        if isinstance(error, OSError):
            error.filename = str(out / "tokenizer.json")
        raise error

    monkeypatch.setitem(STAGE_SPECS, "tokenizer", dataclasses.replace(spec, run=full))
    code, _, err = cli(capsys, "run", str(recipe), "--out", str(run))
    assert code == 1 and "internal error" not in err
    assert "no space left on /" in err and "running stage 'tokenizer'" in err
    where = str(run / ".tmp-tokenizer-") if isinstance(error, OSError) else str(run)
    assert where in err
    entry = json.loads((run / "summary.json").read_text())["stages"]["tokenizer"]
    assert entry["status"] == "failed" and "no space left" in entry["error"]
    assert not list(run.glob(".tmp-*"))


def test_symlinked_stage_folder_is_refused_and_its_target_kept(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, tokenizer=None)
    run = tmp_path / "run"
    assert cli(capsys, "run", str(recipe), "--out", str(run))[0] == 0
    elsewhere = tmp_path / "elsewhere"
    (run / "data").rename(elsewhere)
    (run / "data").symlink_to(elsewhere, target_is_directory=True)
    before = tree(elsewhere)
    code, _, err = cli(capsys, "run", str(recipe), "--out", str(run), "--set", "seed=1")
    assert code == 1 and "internal error" not in err
    assert "symbolic link" in err
    assert (run / "data").is_symlink() and tree(elsewhere) == before


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_run_files_follow_the_umask(tmp_path, capsys, umask):
    recipe = tiny_recipe(tmp_path)
    run = tmp_path / "run"
    previous = os.umask(umask)
    try:
        assert cli(capsys, "run", str(recipe), "--out", str(run))[0] == 0
    finally:
        os.umask(previous)
    for path in [run / "data", run / "tokenizer"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask, path
    for path in [run / "summary.json", run / "recipe.yaml", run / "data" / "_stage.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_leftovers_of_killed_runs_are_cleaned_and_a_half_swapped_stage_put_back(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, pretrain={})
    run = tmp_path / "run"
    assert cli(capsys, "run", str(recipe), "--out", str(run), "--only", "data,tokenizer")[0] == 0
    # what kill -9 leaves at each point of core.atomic's writes
    (run / ".tmp-tokenizer-abc123").mkdir()
    (run / ".tmp-tokenizer-abc123" / "half.json").write_text("{")
    (run / ".summary.json.x1y2z3.tmp").write_text("{")
    (run / "data").rename(run / ".old-data")  # killed between the two renames of a swap
    partial = run / ".pretrain.partial"
    (partial / "checkpoints" / ".tmp-step-00000003-q").mkdir(parents=True)
    (partial / "._inputs.json.k9.tmp").write_text("{")
    code, _, err = cli(capsys, "run", str(recipe), "--out", str(run), "--only", "data,tokenizer")
    assert code == 0, err
    leftovers = [p.name for p in run.rglob("*") if p.name.startswith((".tmp-", ".old-"))]
    assert leftovers == [] and not list(run.rglob("*.tmp"))
    assert (run / "data" / "_stage.json").exists()  # the complete version, put back
    stages = json.loads((run / "summary.json").read_text())["stages"]
    assert stages["data"]["cached"] and stages["tokenizer"]["cached"]
    assert (partial / "checkpoints").is_dir()  # --resume's work is kept


def test_a_second_writer_is_refused_by_name_and_harms_nothing(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    run = tmp_path / "run"
    started, release = tmp_path / "started", tmp_path / "release"
    first = hooked_process("data", "wait", started, release, "run", str(recipe), "--out", str(run))
    try:
        deadline = time.time() + 60
        while not started.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert started.exists(), first.stderr.read() if first.poll() is not None else "timeout"
        (temp,) = run.glob(".tmp-data-*")  # the first run's stage in progress
        for args in (["run", str(recipe)], ["data", str(recipe)]):
            code, _, err = cli(capsys, *args, "--out", str(run))
            assert code == 1 and "internal error" not in err
            assert "in use by another lmforge process" in err and f"pid {first.pid}" in err
        assert temp.exists()
        release.touch()
        _, first_err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, first_err[-2000:]
    stages = json.loads((run / "summary.json").read_text())["stages"]
    assert stages["data"]["status"] == stages["tokenizer"]["status"] == "done"


def test_resume_continues_the_newest_run_of_exactly_that_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny = tiny_recipe(tmp_path, name="tiny", tokenizer=None)
    v2 = tiny_recipe(tmp_path, name="tiny-v2", tokenizer=None)
    assert cli(capsys, "run", str(tiny))[0] == 0
    time.sleep(1.1)  # a later time stamp for the other recipe's run
    assert cli(capsys, "run", str(v2))[0] == 0
    (mine,) = Path("runs").glob("tiny-2*")
    (other,) = Path("runs").glob("tiny-v2-*")
    before = tree(other)
    code, out, err = cli(capsys, "run", str(tiny), "--resume")
    assert code == 0, err
    assert f"run directory: {mine}" in out
    assert tree(other) == before


def test_latest_run_orders_by_time_stamp_and_counter(tmp_path):
    from lmforge.core.rundir import latest_run

    for name in [
        "q-20240101-120000",
        "q-20240101-120000-2",
        "q-20240101-120000-10",
        "q-v2-20250101-000000",  # another recipe
        "q-20230101-000000-x",  # not a run name
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text('{"stages": {}}')
    assert latest_run(tmp_path, "q") == tmp_path / "q-20240101-120000-10"
    assert latest_run(tmp_path, "q-v2") == tmp_path / "q-v2-20250101-000000"
    assert latest_run(tmp_path, "x") is None
