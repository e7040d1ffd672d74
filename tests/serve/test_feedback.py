"""The feedback store: concurrent writer processes, stable input hashes, what improve reads."""

from __future__ import annotations

import multiprocessing
import sqlite3

from lmforge.serve.feedback import FeedbackStore, input_hash, read_corrections


def _write(path: str, tag: str, n: int, start) -> None:
    start.wait()  # both open the fresh file at once: the race CI once lost
    store = FeedbackStore(path)
    for i in range(n):
        store.log_response(f"{tag}{i}", "m", "/v1/classify", [f"text {tag}{i}"], [{"label": "a"}])
        store.add_feedback(f"{tag}{i}", 5, "a", None, f"text {tag}{i}")
    store.close()


def test_two_writer_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "fb.sqlite")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_write, args=(path, tag, 60, start)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM feedback").fetchone() == (120,)
    assert db.execute("SELECT COUNT(DISTINCT id) FROM responses").fetchone() == (120,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_input_hash_is_canonical_and_corrections_carry_their_input(tmp_path):
    assert input_hash({"b": 1, "a": "张"}) == input_hash({"a": "张", "b": 1})
    assert input_hash(["x"]) != input_hash(["y"])
    store = FeedbackStore(tmp_path / "fb.sqlite", log_inputs=True)
    store.log_response("r1", "m", "/v1/classify", ["logged text"], [{"label": "a"}])
    store.add_feedback("r1", None, "b", None)
    store.add_feedback("r1", 4, None, "good")  # a rating alone is no correction
    store.add_feedback("r1", 1, ["b", "c"], None, "sent text")
    store.close()
    rows = read_corrections(tmp_path / "fb.sqlite")
    assert [(r["input"], r["correction"], r["route"]) for r in rows] == [
        (["logged text"], "b", "/v1/classify"),
        ("sent text", ["b", "c"], "/v1/classify"),
    ]
