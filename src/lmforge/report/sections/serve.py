"""Serving: what ``lmforge serve`` answered for this run and what users said about it, read
from the feedback store ``serve/feedback.sqlite`` (opened read-only; a server may still be
writing to it).

Reads the store's two tables: ``responses(created, model, route)`` and
``feedback(created, rating, correction, comment, input, response_id)``, plus the responses'
``input`` (logged only with ``--log-inputs``) and ``output`` beside each correction shown. A run that was never served has no such file and no section.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from lmforge.report.blocks import Block, Examples, KeyValues, Row, Table, Text, fmt
from lmforge.report.run import StageView
from lmforge.report.sections import register

STORE = "feedback.sqlite"  # in the run's serve/ folder (lmforge.serve.run.STORE)
CORRECTIONS_SHOWN = 5


def has_store(root: Path) -> bool:
    """Whether the run at ``root`` was served (its feedback store exists)."""
    return (root / "serve" / STORE).is_file()


@register("serve", "Serving and feedback")
def render(view: StageView) -> list[Block]:
    path = view.path(STORE)
    if path is None:
        return [Text("No feedback store (serve/feedback.sqlite): the run was not served.", "note")]
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return _blocks(db)
    finally:
        db.close()


def _blocks(db: sqlite3.Connection) -> list[Block]:
    total, first, last = db.execute(
        "SELECT COUNT(*), MIN(created), MAX(created) FROM responses"
    ).fetchone()
    routes = db.execute(
        "SELECT route, model, COUNT(*) FROM responses GROUP BY route, model ORDER BY 3 DESC"
    ).fetchall()
    n, rated, mean, corrected, commented = db.execute(
        "SELECT COUNT(*), COUNT(rating), AVG(rating), COUNT(correction), COUNT(comment) "
        "FROM feedback"
    ).fetchone()
    ratings = dict(
        db.execute("SELECT rating, COUNT(*) FROM feedback WHERE rating IS NOT NULL GROUP BY 1")
    )
    served = [
        ("responses logged", fmt(total)),
        ("first", _when(first)),
        ("last", _when(last)),
    ]
    feedback = [
        ("feedback records", fmt(n)),
        ("with a rating", fmt(rated)),
        ("mean rating (1-5)", f"{mean:.2f}" if mean is not None else ""),
        ("with a correction", fmt(corrected)),
        ("with a comment", fmt(commented)),
    ]
    blocks: list[Block] = [
        Row(
            [
                KeyValues([(k, v) for k, v in served if v], "Served"),
                KeyValues([(k, v) for k, v in feedback if v], "Feedback (POST /v1/feedback)"),
            ]
        )
    ]
    tables: list[Block] = []
    if routes:
        rows = [[str(r), str(m), fmt(c)] for r, m, c in routes]
        tables.append(Table(["route", "model", "responses"], rows, "Responses per route"))
    if ratings:
        rows = [[str(r), fmt(ratings[r])] for r in sorted(ratings)]
        tables.append(Table(["rating", "records"], rows, "Ratings"))
    if tables:
        blocks.append(Row(tables))
    items = []
    for text, output, correction, comment in db.execute(
        "SELECT COALESCE(f.input, r.input), r.output, f.correction, f.comment FROM feedback f "
        "LEFT JOIN responses r ON r.id = f.response_id "
        "WHERE f.correction IS NOT NULL ORDER BY f.id DESC LIMIT ?",
        (CORRECTIONS_SHOWN,),
    ):
        head = f"answered {_short(output)}" if output else "answer not logged"
        if text:
            head = f"{_short(text, 120)} · {head}"
        items.append(
            (head, f"corrected to {_short(correction)}" + (f" ({comment})" if comment else ""))
        )
    if items:
        blocks.append(Examples(f"Latest corrections (up to {CORRECTIONS_SHOWN})", items))
    if not total and not n:
        blocks.append(Text("The store is empty: nothing was answered yet.", "note"))
    return blocks


def _short(stored: Any, limit: int = 300) -> str:
    """A stored JSON value as short text (a label, a list of labels, a reply)."""
    try:
        value = json.loads(stored)
    except (TypeError, ValueError):
        value = stored
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def _when(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    return datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M %Z")
