"""The feedback store: every served response and what users said about it, in SQLite.

``RUN/serve/feedback.sqlite`` (WAL mode) holds two tables::

    responses(id, created, model, route, input_sha256, input, output)
    feedback(id, response_id, created, rating, correction, input, comment)

A response row records its id, model, route and the SHA-256 of its input (the input itself
only with ``--log-inputs``), so feedback can be matched to what was answered without keeping
users' text by default (committed without an fsync, ``synchronous=NORMAL``, which a killed
process does not lose). ``POST /v1/feedback`` writes one row per request in its own
transaction, committed with ``synchronous=FULL`` (the WAL is fsynced) before the 200 goes out:
a server killed right after answering still has the record. WAL lets ``lmforge improve`` (or
any reader) read while the server writes, and several writer processes wait on each other
(``busy_timeout``) rather than fail.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    model TEXT NOT NULL,
    route TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    input TEXT,
    output TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    response_id TEXT NOT NULL,
    created REAL NOT NULL,
    rating INTEGER,
    correction TEXT,
    input TEXT,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS feedback_response ON feedback(response_id);
"""


def input_hash(value: Any) -> str:
    """SHA-256 of a request input as canonical JSON (same input, same hash)."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in WAL mode, waiting up to 30 s for other writers. ``FULL`` fsyncs the WAL
    at every commit (survives power loss); ``NORMAL`` survives a killed process, not power loss.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    # switching a new file to WAL takes an exclusive lock that SQLite's busy handler does not
    # wait for: two processes opening a fresh store at once got "database is locked" (CI)
    _until_unlocked(lambda: db.execute("PRAGMA journal_mode=WAL"))
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=30000")
    _until_unlocked(lambda: db.executescript(SCHEMA))
    return db


def _until_unlocked(statement: Callable[[], Any], timeout: float = 30.0) -> None:
    """Run ``statement``, retrying with backoff while another connection holds the lock."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.25)


class FeedbackStore:
    """Thread-safe writes to the store (one connection, one lock; SQLite serialises anyway)."""

    def __init__(self, path: Path, log_inputs: bool = False) -> None:
        self.path = Path(path)
        self.log_inputs = log_inputs
        self._db = connect(self.path)  # feedback: fsynced before the 200
        # response log: one row per answered request, an fsync each would cap throughput;
        # WAL + NORMAL still keeps every committed row when the process is killed
        self._log = connect(self.path, "NORMAL")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._log.close()

    def log_response(self, rid: str, model: str, route: str, inputs: Any, output: Any) -> None:
        """Record a served response (one transaction)."""
        row = (
            rid,
            time.time(),
            model,
            route,
            input_hash(inputs),
            json.dumps(inputs, ensure_ascii=False) if self.log_inputs else None,
            json.dumps(output, ensure_ascii=False),
        )
        with self._lock:
            self._log.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?)", row)

    def has_response(self, rid: str) -> bool:
        with self._lock:
            found = self._log.execute("SELECT 1 FROM responses WHERE id=?", (rid,)).fetchone()
        return found is not None

    def add_feedback(
        self,
        response_id: str,
        rating: int | None,
        correction: Any,
        comment: str | None,
        text: Any = None,
    ) -> int:
        """Store one feedback record, committed (fsynced) before returning its id.

        ``correction`` and ``text`` (the input: a text, or QA's question and context) are
        stored as JSON."""
        value = _dumps(correction)
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO feedback (response_id, created, rating, correction, input, comment) "
                "VALUES (?,?,?,?,?,?)",
                (response_id, time.time(), rating, value, _dumps(text), comment),
            )
            return int(cur.lastrowid or 0)


def read_corrections(path: Path) -> list[dict[str, Any]]:
    """Every feedback row with a correction, joined to its response (input when logged).

    Returns dicts with ``response_id``, ``route``, ``input`` (the feedback's ``input``, else the
    logged input; None when neither was given),
    ``output`` and ``correction`` (decoded JSON), oldest first.
    """
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute(
            "SELECT f.response_id, r.route, COALESCE(f.input, r.input), r.output, f.correction "
            "FROM feedback f "
            "LEFT JOIN responses r ON r.id = f.response_id "
            "WHERE f.correction IS NOT NULL ORDER BY f.id"
        ).fetchall()
    finally:
        db.close()
    out = []
    for rid, route, inp, output, correction in rows:
        out.append(
            {
                "response_id": rid,
                "route": route,
                "input": json.loads(inp) if inp else None,
                "output": json.loads(output) if output else None,
                "correction": json.loads(correction),
            }
        )
    return out


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)
