"""Exceptions whose message is shown to the user as is (no traceback unless --debug)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class LmforgeError(Exception):
    """An error the user can act on: the message says what was wrong, where, and what to do."""


class RecipeError(LmforgeError):
    """A recipe that cannot run: raised before any work starts."""


class DataError(LmforgeError):
    """Input data that is missing, unreadable or empty after filtering."""


class Terminated(BaseException):
    """The process received SIGTERM: unwinds like Ctrl-C (``KeyboardInterrupt``).

    A ``BaseException`` so that ``except Exception`` in libraries does not swallow it.
    """


_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "StorageFull")


def is_disk_full(error: BaseException, near: str | Path | None = None) -> bool:
    """Whether ``error``, or an error it came from, means the disk (or quota) is full.

    Libraries wrap the ``OSError``: safetensors says ``StorageFull``, torch.save only "file
    write failed"; for such a write failure the free space of ``near`` decides.
    """
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e)
        if any(s in text for s in _FULL_TEXTS):
            return True
        if near is not None and "write" in text.lower() and _free_bytes(Path(near)) < 1 << 20:
            return True
        e = e.__cause__ or e.__context__
    return False


def no_space_message(error: BaseException, near: str | Path, doing: str) -> str:
    """``no space left on /mnt/data (holding runs/x/pretrain) while <doing>`` and what to do."""
    filename = getattr(error, "filename", None)
    path = Path(filename) if isinstance(filename, str | os.PathLike) else Path(near)
    return (
        f"no space left on {_mount_point(path)} (the file system holding {path}) while {doing}. "
        "Free some space there, or give --out a folder on another disk, and run again: completed "
        "stages are reused, and --resume continues pretraining from its last checkpoint."
    )


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return 1 << 62


def _mount_point(path: Path) -> Path:
    path = _existing(path)
    try:
        dev = path.stat().st_dev
        while path != path.parent and path.parent.stat().st_dev == dev:
            path = path.parent
    except OSError:
        pass
    return path
