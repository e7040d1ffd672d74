"""An exclusive lock on a run directory, so that two lmforge processes never write one run.

``fcntl.flock`` on a lock file that is created once and never replaced or deleted (replacing it
would let a second process lock a different inode). The kernel drops the lock when its holder
exits, however it exits (``kill -9`` included), so a crash never leaves a stale lock behind.
The holder writes who it is into the file, so a second writer is refused by name.
Advisory and local: it protects against other lmforge processes on this machine (and on network
file systems whose ``flock`` works across hosts), not against other programs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from lmforge.core.atomic import current_umask
from lmforge.core.errors import LmforgeError


class RunDirBusy(LmforgeError):
    """Another process holds the run directory's lock."""


class DirLock:
    """``with DirLock(path):`` holds an exclusive lock on ``path`` (created if missing)."""

    def __init__(self, path: str | Path, what: str) -> None:
        """``what`` names the locked thing in the refusal message (e.g. "run directory runs/x")."""
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises:
            RunDirBusy: another process holds it; the message names that process.
            LmforgeError: the file system does not support locks.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise RunDirBusy(
                f"{self.what} is in use by another lmforge process ({holder}). Two runs writing "
                "one directory would delete each other's work: wait for that run to finish (or "
                "stop it), or give this run another --out."
            ) from None
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise LmforgeError(
                    f"cannot lock {self.path}: the file system does not support file locks "
                    f"({e.strerror}); put the run directory on a local disk (--out)"
                ) from None
            raise
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:300],  # the process's command line
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "it has not said which"
    text = f"pid {holder['pid']} on {holder.get('host', '?')} since {holder.get('since', '?')}"
    return text + (f": `{holder['command']}`" if holder.get("command") else "")
