"""Progress bars for long loops (rich), quiet when output is not a terminal or under tests."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator


def progress_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("LMFORGE_NO_PROGRESS")


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, info=None)``; shows a bar with rate, ETA and the latest ``info``
    (e.g. loss and tokens/s) on a terminal, nothing otherwise."""
    if not progress_enabled():
        yield lambda n=1, info=None: None
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
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None) -> None:
            if info is None:
                progress.advance(task, n)
            else:
                progress.update(task, advance=n, info=info)

        yield advance
