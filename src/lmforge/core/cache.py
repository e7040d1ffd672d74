"""A content-addressed cache of completed stage folders, shared by every run directory.

A stage's outputs are decided by its input hash (config, seed, upstream outputs' hashes, input
file fingerprints, lmforge version: ``runner.stage_hash``); that hash already skips a stage in
one run directory. Keyed by the same hash plus a fingerprint of lmforge's own source and the
versions of the libraries that shape the outputs (an editable install keeps its version
number while its code changes), the cache lets a *new* run directory take a stage's outputs
instead of recomputing them: ``sentiment-zh`` and ``ner-zh`` share one pretrained encoder.

Layout (``$LMFORGE_CACHE``, else ``$XDG_CACHE_HOME/lmforge/stages``, else
``~/.cache/lmforge/stages``)::

    <cache>/<stage>-<key>/manifest.json   stage, input hash, result, metric events, and the
                                          size and sha256 of every file
    <cache>/<stage>-<key>/files/...       the stage folder (without its ``_stage.json``)

Entries are built in ``.tmp-*`` and renamed into place; a rename onto an existing entry fails,
so of two runs storing the same entry at once the first wins and the second discards its copy
(both copies are builds of the same inputs). Files are hard links where the file system allows
(the cache then costs no extra space beside the runs that hold the same files), else copies,
and read-only: a file shared by several runs must not be edited in place. A reused entry is
checked file by file against its manifest after it is linked into the run; a changed or missing
file drops the entry and the stage is rebuilt.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from lmforge.core.atomic import current_umask
from lmforge.core.hashing import hash_json
from lmforge.core.log import logger

CACHE_ENV = "LMFORGE_CACHE"  # the cache folder
NO_CACHE_ENV = "LMFORGE_NO_CACHE"  # "1": no run reads or writes the cache (as --no-cache)
MANIFEST = "manifest.json"
FILES = "files"
SKIP = frozenset({"_stage.json"})  # written afresh by each run that takes the entry
# libraries whose version can change what a cached stage would produce
_LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "datasets", "peft")


def cache_dir() -> Path:
    """Where the stage cache lives: ``$LMFORGE_CACHE``, else the user's cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lmforge" / "stages"


def disabled_by_env() -> bool:
    """``LMFORGE_NO_CACHE=1`` (any value but "", "0", "false", "no") turns the cache off."""
    return os.environ.get(NO_CACHE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@functools.cache
def code_fingerprint() -> str:
    """Hash of lmforge's installed source files and the versions of the libraries it runs on.

    Taken once per process: the code a process runs is the code it imported, whatever is
    edited on disk meanwhile.
    """
    import lmforge

    package = Path(lmforge.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode() + b"\0")
            digest.update(path.read_bytes())
    versions = {}
    for name in _LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return hash_json({"source": digest.hexdigest(), "libraries": versions})


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class DamagedEntry(Exception):
    """A cache entry whose files no longer match its manifest (message: what differs)."""


@dataclass
class Hit:
    """A stage restored from the cache: what the run records about it."""

    entry: str  # the entry's folder name
    result: dict[str, Any]  # {"metrics", "artifacts"} of the build
    events: list[dict[str, Any]]  # the build's metrics.jsonl lines
    built_seconds: float
    built_in: str  # the run directory that built it


@dataclass
class Entry:
    """One entry as ``lmforge cache`` lists it."""

    path: Path
    stage: str
    input_hash: str
    size: int  # bytes of its files (hard links: shared with the runs holding them)
    created: str
    built_seconds: float | None
    built_in: str
    damaged: bool = False


@dataclass
class StageCache:
    """The cache at ``root``; ``code`` defaults to :func:`code_fingerprint` (computed once)."""

    root: Path = field(default_factory=cache_dir)
    code: str = field(default_factory=code_fingerprint)

    def entry_path(self, stage: str, input_hash: str) -> Path:
        key = hash_json({"stage": stage, "input_hash": input_hash, "code": self.code})
        return self.root / f"{stage}-{key[:40]}"

    # ------------------------------------------------------------------ reuse

    def restore(self, stage: str, input_hash: str, dest: Path) -> Hit | None:
        """Link (else copy) the entry's files into the empty folder ``dest`` and verify them.

        Returns None when there is no entry, or when it is damaged: then it is dropped, with a
        warning naming the file, and the caller builds the stage.
        """
        path = self.entry_path(stage, input_hash)
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self._drop(path, f"its {MANIFEST} cannot be read ({e})")
            return None
        try:
            files = manifest["files"]
            for rel in manifest.get("dirs", []):
                (dest / rel).mkdir(parents=True, exist_ok=True)
            for rel, want in files.items():
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                source = path / FILES / rel
                if not source.is_file():
                    raise DamagedEntry(f"{rel} is missing")
                _link_or_copy(source, target)
                # the file as it is now in the run (a hard link shares the entry's bytes)
                if target.stat().st_size != want["size"] or file_sha256(target) != want["sha256"]:
                    raise DamagedEntry(f"{rel} changed since it was stored")
            result = manifest["result"]
            if not isinstance(result.get("metrics"), dict) or not isinstance(
                result.get("artifacts"), dict
            ):
                raise DamagedEntry(f"its {MANIFEST} has no stage result")
            hit = Hit(
                entry=path.name,
                result=result,
                events=manifest.get("events", []),
                built_seconds=float(manifest.get("seconds", 0.0)),
                built_in=str(manifest.get("built_in", "")),
            )
        except (DamagedEntry, KeyError, TypeError, ValueError, AttributeError) as e:
            self._drop(path, str(e))
            return None
        except FileNotFoundError:  # dropped or cleared by another process meanwhile
            return None
        return hit

    def _drop(self, path: Path, why: str) -> None:
        logger.warning(
            "stage cache: entry %s is damaged (%s); dropped it, the stage is rebuilt", path, why
        )
        remove_entry(path)

    # ------------------------------------------------------------------ store

    def store(
        self,
        stage: str,
        input_hash: str,
        src: Path,
        result: dict[str, Any],
        events: list[dict[str, Any]],
        seconds: float,
        built_in: str,
    ) -> Path | None:
        """Add the completed stage folder ``src`` as an entry, unless one exists already.

        Returns the entry's path, or None when another run stored it first (its copy stays).
        """
        final = self.entry_path(stage, input_hash)
        if final.exists():
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{final.name}-"))
        try:
            os.chmod(tmp, 0o777 & ~current_umask())
            files: dict[str, dict[str, Any]] = {}
            dirs: list[str] = []
            for path in sorted(src.rglob("*")):
                rel = path.relative_to(src).as_posix()
                if path.is_symlink():
                    raise OSError(errno.EINVAL, f"{path} is a symbolic link; not cached")
                if path.is_dir():
                    dirs.append(rel)
                    continue
                if rel in SKIP:
                    continue
                target = tmp / FILES / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(path, target)
                _read_only(target)
                files[rel] = {"size": target.stat().st_size, "sha256": file_sha256(target)}
            manifest = {
                "format": 1,
                "stage": stage,
                "input_hash": input_hash,
                "code": self.code,
                "created": datetime.now().isoformat(timespec="seconds"),
                "seconds": round(seconds, 3),
                "built_in": built_in,
                "result": result,
                "dirs": dirs,
                "files": files,
                "events": events,
            }
            with (tmp / MANIFEST).open("w", encoding="utf-8") as f:
                json.dump(manifest, f, ensure_ascii=False, default=str)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, final)  # fails when the entry exists: the first store wins
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return None
            return final
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ------------------------------------------------------------------ report, clear

    def entries(self) -> list[Entry]:
        """Every complete entry, oldest first (damaged manifests are listed as such)."""
        found: list[Entry] = []
        if not self.root.is_dir():
            return found
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            size = tree_size(path)
            try:
                m = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
                found.append(
                    Entry(
                        path,
                        str(m["stage"]),
                        str(m["input_hash"]),
                        size,
                        str(m.get("created", "")),
                        m.get("seconds"),
                        str(m.get("built_in", "")),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError):
                stage = path.name.rsplit("-", 1)[0]
                found.append(Entry(path, stage, "", size, "", None, "", damaged=True))
        return sorted(found, key=lambda e: e.created)

    def leftovers(self) -> list[Path]:
        """Temporary folders of stores (or drops) a killed process did not finish."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.name.startswith((".tmp-", ".drop-")))

    def clear(self) -> int:
        """Remove every entry and leftover; returns the bytes their files held."""
        freed = 0
        for path in [e.path for e in self.entries()] + self.leftovers():
            freed += tree_size(path)
            remove_entry(path)
        return freed


def remove_entry(path: Path) -> None:
    """Rename out of the way first, so no reader ever sees a half-deleted entry."""
    gone = path.with_name(f".drop-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(path, gone)
    except FileNotFoundError:
        return  # another process removed it
    shutil.rmtree(gone, ignore_errors=True)


def tree_size(path: Path) -> int:
    """Bytes of the files under ``path`` (each counted once per name, as ``du -l``)."""
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no copy of the bytes), else a copy: across file systems, or where the
    file system has no hard links."""
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        shutil.copy2(source, target)


def _read_only(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    os.chmod(path, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
