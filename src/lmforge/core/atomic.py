"""Write files and directories so a crash never leaves something that looks finished.

Everything is written under a temporary name in the same directory and renamed into place:
``os.replace`` is atomic on POSIX for files, and a directory is swapped in with two renames
(a crash between them leaves ``.old-<name>``, which ``core.rundir`` puts back on the next run).
The temporary names (``.tmp-<name>-*``, ``.<name>.*.tmp``) are what a run directory's clean-up
removes. ``tempfile`` creates files 0600 and directories 0700; the finished ones get the
permissions the process umask gives, like any file the user creates.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError


def current_umask() -> int:
    """The process umask, read without changing it (Linux); else set and restored at once."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a completed ``tmp`` directory to ``final``, replacing any previous version.

    Raises:
        LmforgeError: ``final`` is a symbolic link; replacing it would swap out the link, not
            the folder it points to, so it is refused before anything moves.
    """
    if final.is_symlink():
        raise LmforgeError(
            f"{final} is a symbolic link; lmforge replaces this folder as a whole when its stage "
            "reruns and does not write through links. Replace the link with a real folder (or "
            "link the whole run directory instead)."
        )
    old = final.with_name(f".old-{final.name}")
    if old.exists() or old.is_symlink():
        _remove(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the swap got that far
        raise
