import json

import pytest

from lmforge.core.atomic import atomic_dir, write_json_atomic, write_text_atomic


def test_atomic_dir_appears_only_on_success(tmp_path):
    final = tmp_path / "stage"
    with atomic_dir(final) as tmp:
        (tmp / "out.txt").write_text("done")
        assert not final.exists()  # nothing that looks finished while the block runs
    assert (final / "out.txt").read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]


def test_atomic_dir_failure_keeps_previous_version_and_leaves_no_temp(tmp_path):
    final = tmp_path / "stage"
    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "v").write_text("2")
        raise RuntimeError("crash mid-stage")
    assert (final / "v").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]


def test_atomic_dir_replaces_old_contents(tmp_path):
    final = tmp_path / "stage"
    with atomic_dir(final) as tmp:
        (tmp / "old").write_text("x")
    with atomic_dir(final) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in final.iterdir()) == ["new"]


def test_write_json_atomic_roundtrip_and_no_leftovers(tmp_path):
    path = tmp_path / "a" / "s.json"
    write_json_atomic(path, {"x": 1, "中文": "好"})
    write_text_atomic(tmp_path / "a" / "t.txt", "hi")
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": 1, "中文": "好"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.json", "t.txt"]
