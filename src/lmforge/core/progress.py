"""Progress bars for long loops (rich), quiet when output is not a terminal or under tests."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator


def progress_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("LMFORGE_NO_PROGRESS")


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a bar with rate and ETA on a terminal, nothing otherwise."""
    if not progress_enabled():
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
