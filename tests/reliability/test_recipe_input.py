"""Ordinary recipe mistakes get an lmforge error naming what to fix, never an internal error."""

from __future__ import annotations

import subprocess
import sys

import pytest
from runner_tiny import cli, tiny_recipe


def assert_user_error(code: int, err: str, *expected: str) -> None:
    assert code == 1, err
    assert "internal error" not in err and "Traceback" not in err
    for text in expected:
        assert text in err, err


def test_a_recipe_that_is_not_utf8_is_named(tmp_path, capsys):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("name: café\ndata:\n  sources: [{builtin: shakespeare}]\n".encode("latin-1"))
    for command in ("validate", "run"):
        code, _, err = cli(capsys, command, str(recipe))
        assert_user_error(code, err, "latin1.yaml is not UTF-8", "0xe9")


def test_a_very_long_run_name_is_bounded(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = tiny_recipe(tmp_path, name="a" * 300, file="long.yaml")
    for command in ("validate", "run"):
        code, _, err = cli(capsys, command, str(recipe))
        assert_user_error(code, err, "name: at most 100 characters")
    assert not (tmp_path / "runs").exists()
    ok = tiny_recipe(tmp_path, name="b" * 100, file="ok.yaml", tokenizer=None)
    code, _, err = cli(capsys, "run", str(ok))
    assert code == 0, err


def test_validate_rejects_a_recipe_with_no_stages_like_run(tmp_path, capsys):
    recipe = tmp_path / "empty.yaml"
    recipe.write_text("name: nothing\nseed: 3\n")
    for command in ("validate", "run"):
        code, _, err = cli(capsys, command, str(recipe))
        assert_user_error(code, err, "configures no stage")


def test_duplicate_keys_are_refused_with_their_lines(tmp_path, capsys):
    recipe = tmp_path / "dup.yaml"
    recipe.write_text(
        "name: dup\n"
        "data:\n"
        "  sources: [{builtin: shakespeare}]\n"
        "  dedup: {threshold: 0.9}\n"
        "  dedup: {near: false}\n"
    )
    code, _, err = cli(capsys, "validate", str(recipe))
    assert_user_error(code, err, "line 5: duplicate key 'dedup' (first at line 4)")
    recipe.write_text("name: a\nname: b\ndata:\n  sources: [{builtin: shakespeare}]\n")
    code, _, err = cli(capsys, "validate", str(recipe))
    assert_user_error(code, err, "duplicate key 'name'")


def test_yaml_merge_keys_may_still_be_overridden(tmp_path, capsys):
    recipe = tmp_path / "merge.yaml"
    recipe.write_text(
        "name: merge\n"
        "base: &base {builtin: shakespeare, limit: 5}\n"
        "data:\n"
        "  sources: [{<<: *base, limit: 7}]\n"
    )
    code, _, err = cli(capsys, "validate", str(recipe))
    assert "duplicate" not in err
    assert "base: unknown key" in err  # the anchor's holder is an ordinary unknown key


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "{bad}", "--debug"],
        ["--debug", "validate", "{bad}"],
        ["run", "{bad}", "--only", "data", "--debug"],
    ],
)
def test_debug_is_accepted_after_the_command_as_messages_advise(tmp_path, args):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsed: 1\ndata:\n  sources: [{builtin: shakespeare}]\n")
    argv = [a.replace("{bad}", str(bad)) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "lmforge", *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr and "did you mean 'seed'" in done.stderr
