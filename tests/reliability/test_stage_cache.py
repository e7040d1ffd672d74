"""The stage cache: a second run directory takes data, tokenizer and pretrain from it instead
of recomputing them; a changed input, a damaged entry or --no-cache builds the stage; two runs
storing one entry at once leave one complete entry."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from runner_tiny import cli, hooked_process, tiny_recipe

from lmforge.core import cache as cache_module
from lmforge.core.cache import MANIFEST, StageCache
from lmforge.stages import STAGE_SPECS

pytestmark = pytest.mark.usefixtures("one_thread")

PRETRAIN = {"max_steps": 4, "eval_every": 2, "checkpoint_every": 2}


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """A cache folder of this test's own, turned on (tests/conftest.py turns it off)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("LMFORGE_CACHE", str(root))
    monkeypatch.delenv("LMFORGE_NO_CACHE", raising=False)
    return root


@pytest.fixture
def builds(monkeypatch) -> dict[str, int]:
    """How many times each stage's own code ran (a stage taken from the cache does not)."""
    counts = {name: 0 for name in STAGE_SPECS}
    for name, spec in list(STAGE_SPECS.items()):

        def counted(ctx, out, _run=spec.run, _name=name):
            counts[_name] += 1
            return _run(ctx, out)

        monkeypatch.setitem(STAGE_SPECS, name, dataclasses.replace(spec, run=counted))
    return counts


def stages(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())["stages"]


def entries(root: Path) -> dict[str, Path]:
    return {e.stage: e.path for e in StageCache(root, code="").entries()}


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "_stage.json"
    }


def test_a_second_run_takes_every_stage_from_the_cache_without_training(
    tmp_path, capsys, store, builds
):
    recipe = tiny_recipe(tmp_path, pretrain=PRETRAIN)
    first, second = tmp_path / "first", tmp_path / "second"
    assert cli(capsys, "run", str(recipe), "--out", str(first))[0] == 0
    assert builds == {**builds, "data": 1, "tokenizer": 1, "pretrain": 1}
    assert set(entries(store)) == {"data", "tokenizer", "pretrain"}

    code, out, _ = cli(capsys, "run", str(recipe), "--out", str(second))
    assert code == 0 and "pretrain   done" in out and "(from the stage cache)" in out
    assert builds == {**builds, "data": 1, "tokenizer": 1, "pretrain": 1}  # nothing trained
    summary = stages(second)
    for stage in ("data", "tokenizer", "pretrain"):
        entry = summary[stage]
        assert entry["status"] == "done" and entry["from_cache"]["built_in"] == str(first.resolve())
        assert entry["metrics"] == stages(first)[stage]["metrics"]
        assert files(second / stage) == files(first / stage)
        state = json.loads((second / stage / "_stage.json").read_text())
        assert state["hash"] == json.loads((first / stage / "_stage.json").read_text())["hash"]
    # the pretraining curve is in the second run's metrics too (the report draws it)
    curve = [
        (e["step"], e["name"], e["value"])
        for e in map(json.loads, (second / "metrics.jsonl").read_text().splitlines())
        if e["stage"] == "pretrain"
    ]
    assert curve and curve == [
        (e["step"], e["name"], e["value"])
        for e in map(json.loads, (first / "metrics.jsonl").read_text().splitlines())
        if e["stage"] == "pretrain"
    ]
    assert (second / "report.html").read_text().count("taken from the stage cache") == 3
    # the model reloads from the second run
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(second / "pretrain" / "model") is not None

    code, out, _ = cli(capsys, "cache")
    assert code == 0 and str(store) in out and "3 entries" in out
    assert all(f"  {stage}" in out for stage in ("data", "tokenizer", "pretrain"))
    code, out, _ = cli(capsys, "cache", "--clear")
    assert code == 0 and "cleared" in out and entries(store) == {}
    assert (second / "pretrain" / "model" / "model.safetensors").exists()  # runs keep theirs


def test_a_changed_input_rebuilds_the_stage_and_what_reads_it(tmp_path, capsys, store, builds):
    recipe = tiny_recipe(tmp_path)
    assert cli(capsys, "run", str(recipe), "--out", str(tmp_path / "a"))[0] == 0
    edited = ["--set", "tokenizer.vocab_size=280"]
    assert cli(capsys, "run", str(recipe), "--out", str(tmp_path / "b"), *edited)[0] == 0
    assert (builds["data"], builds["tokenizer"]) == (1, 2)
    assert "from_cache" in stages(tmp_path / "b")["data"]
    assert "from_cache" not in stages(tmp_path / "b")["tokenizer"]

    corpus = tmp_path / "corpus.txt"  # an input file changed: the data stage rebuilds
    corpus.write_text(corpus.read_text() + "a new line of text for the corpus\n")
    assert cli(capsys, "run", str(recipe), "--out", str(tmp_path / "c"))[0] == 0
    assert (builds["data"], builds["tokenizer"]) == (2, 3)
    assert len(StageCache(store, code="").entries()) == 5


def test_a_damaged_entry_is_reported_dropped_and_rebuilt(tmp_path, capsys, store, builds):
    recipe = tiny_recipe(tmp_path)
    first = tmp_path / "first"
    assert cli(capsys, "run", str(recipe), "--out", str(first))[0] == 0
    kept = entries(store)
    (kept["data"] / "files" / "stats.json").unlink()  # a file missing
    changed = kept["tokenizer"] / "files" / "tokenizer.json"
    text = changed.read_text()
    changed.unlink()  # a new file, so the first run's hard-linked copy stays as it was
    changed.write_text(text.replace('"model"', '"modal"', 1))

    code, _, err = cli(capsys, "run", str(recipe), "--out", str(tmp_path / "second"))
    assert code == 0 and (builds["data"], builds["tokenizer"]) == (2, 2)
    assert "stats.json is missing" in err and "tokenizer.json changed" in err
    assert err.count("is damaged") == 2
    assert files(tmp_path / "second" / "tokenizer") == files(first / "tokenizer")

    # the rebuilt stages were stored again, whole: a third run takes them
    code, _, err = cli(capsys, "run", str(recipe), "--out", str(tmp_path / "third"))
    assert code == 0 and "is damaged" not in err and builds["tokenizer"] == 2
    assert files(tmp_path / "third" / "data") == files(first / "data")


def test_no_cache_neither_reads_nor_writes_the_cache(tmp_path, capsys, store, builds, monkeypatch):
    recipe = tiny_recipe(tmp_path)
    assert cli(capsys, "run", str(recipe), "--out", str(tmp_path / "a"), "--no-cache")[0] == 0
    with monkeypatch.context() as env:
        env.setenv("LMFORGE_NO_CACHE", "1")  # the same for every command
        assert cli(capsys, "tokenizer", str(recipe), "--out", str(tmp_path / "e"))[0] == 0
    assert entries(store) == {}
    assert cli(capsys, "run", str(recipe), "--out", str(tmp_path / "b"))[0] == 0
    assert cli(capsys, "run", str(recipe), "--out", str(tmp_path / "c"), "--no-cache")[0] == 0
    assert (builds["data"], builds["tokenizer"]) == (4, 4)
    assert all("from_cache" not in entry for entry in stages(tmp_path / "c").values())


def test_a_store_that_loses_the_race_keeps_the_first_entry(tmp_path, monkeypatch):
    """Another process renames its entry into place while this one is still writing its own."""
    src = tmp_path / "stage"
    (src / "model").mkdir(parents=True)
    (src / "model" / "weights.bin").write_bytes(b"\x00" * 1000)
    result = {"metrics": {"loss": 1.0}, "artifacts": {}}
    mine, other = StageCache(tmp_path / "cache", "code"), StageCache(tmp_path / "cache", "code")
    real, raced = cache_module.file_sha256, []

    def other_finishes_first(path):
        if not raced:
            raced.append(path)
            assert other.store("pretrain", "h", src, result, [], 2.0, "other") is not None
        return real(path)

    monkeypatch.setattr(cache_module, "file_sha256", other_finishes_first)
    assert mine.store("pretrain", "h", src, result, [], 1.0, "mine") is None
    path = mine.entry_path("pretrain", "h")
    assert json.loads((path / MANIFEST).read_text())["built_in"] == "other"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]  # no leftovers
    dest = tmp_path / "restored"
    dest.mkdir()
    assert mine.restore("pretrain", "h", dest) is not None
    assert (dest / "model" / "weights.bin").read_bytes() == b"\x00" * 1000


def test_two_processes_building_the_same_entries_at_once_do_not_clobber(tmp_path, store):
    recipe = tiny_recipe(tmp_path)
    release = tmp_path / "release"
    procs = []
    for name in ("a", "b"):  # both wait at the tokenizer's start, then build it together
        started = tmp_path / f"started-{name}"
        args = ("run", str(recipe), "--out", str(tmp_path / name))
        procs.append((started, hooked_process("tokenizer", "wait", started, release, *args)))
    for started, proc in procs:
        while not started.exists():
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.05)
    release.touch()
    for _, proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]

    kept = entries(store)
    assert set(kept) == {"data", "tokenizer"}
    assert not [p for p in store.iterdir() if p.name.startswith(".")]  # no half-written entry
    assert files(tmp_path / "a" / "tokenizer") == files(tmp_path / "b" / "tokenizer")
    for stage, path in kept.items():  # the entry that won is whole
        manifest = json.loads((path / MANIFEST).read_text())
        dest = tmp_path / f"restored-{stage}"
        dest.mkdir()
        hit = StageCache(store, manifest["code"]).restore(stage, manifest["input_hash"], dest)
        assert hit is not None and Path(hit.built_in) in (
            tmp_path.resolve() / "a",
            tmp_path.resolve() / "b",
        )
        assert files(dest) == files(tmp_path / "a" / stage)
