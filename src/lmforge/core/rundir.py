"""The run directory: resolved recipe, metrics log, summary, one sub-directory per stage.

Layout::

    <run>/.lmforge-run    marker: this folder is an lmforge run directory (name, creation time)
    <run>/.lmforge-run.lock  held (flock) by the one process writing the run; names that process
    <run>/recipe.yaml     the resolved recipe the completed stages were made from + versions
    <run>/metrics.jsonl   one JSON event per logged value
    <run>/summary.json    {"name", "stages": {stage: {status, seconds, metrics, artifacts}}}
    <run>/<stage>/        the stage's outputs, swapped in atomically when complete
    <run>/<stage>/_stage.json  what the outputs were made from: input hash, upstream hashes
    <run>/.<stage>.partial/    a resumable stage's work in progress (kept after a crash)

A writer opens the directory with :func:`open_run_dir`: only a new or empty folder, or one
holding the marker, is used (lmforge replaces stage folders such as ``data/``, which in a user's
own folder may be their input); the lock keeps a second writer out; leftovers of killed runs are
cleaned up.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from lmforge.core.atomic import write_json_atomic, write_text_atomic
from lmforge.core.errors import LmforgeError, is_disk_full, no_space_message
from lmforge.core.lock import DirLock
from lmforge.core.log import logger
from lmforge.core.metrics import MetricsLogger
from lmforge.core.stage import StageResult

# done: outputs complete and made from the current outputs of the stages it reads;
# stale: outputs complete, but a stage it reads has changed since (rerun it to refresh);
# interrupted: stopped by Ctrl-C or SIGTERM (a resumable stage keeps its partial work)
Status = Literal["done", "failed", "skipped", "stale", "interrupted"]
STAGE_STATE = "_stage.json"
MARKER = ".lmforge-run"
LOCK_FILE = ".lmforge-run.lock"
_RUN_FILES = ("recipe.yaml", "summary.json", "metrics.jsonl", "report.html")
_STAMP = re.compile(r"(?P<stamp>\d{8}-\d{6})(?:-(?P<n>\d+))?")


class RunDir:
    def __init__(self, root: str | Path, name: str, writer: bool = True) -> None:
        """``writer=False`` for processes other than rank 0: they read, never write.

        Writers should come through :func:`open_run_dir`, which checks and locks the folder.
        """
        self.root = Path(root)
        self.name = name
        if writer:
            self.root.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsLogger(self.root / "metrics.jsonl", enabled=writer)

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def partial_dir(self, stage: str) -> Path:
        return self.root / f".{stage}.partial"

    def write_recipe(self, yaml_text: str) -> None:
        write_text_atomic(self.root / "recipe.yaml", yaml_text)

    def load_summary(self) -> dict[str, Any]:
        if self.summary_path.exists():
            summary = json.loads(self.summary_path.read_text(encoding="utf-8"))
            summary["name"] = self.name
            return summary
        return {"name": self.name, "stages": {}}

    def record_stage(
        self,
        stage: str,
        status: Status,
        seconds: float,
        result: StageResult | None = None,
        **extra: Any,
    ) -> None:
        """Rewrite summary.json with this stage's entry; artifacts become run-relative paths."""
        summary = self.load_summary()
        result = result or StageResult()
        summary["stages"][stage] = {
            "status": status,
            "seconds": round(float(seconds), 3),
            "metrics": result.metrics,
            "artifacts": {k: f"{stage}/{v}" for k, v in result.artifacts.items()},
            **extra,
        }
        write_json_atomic(self.summary_path, summary)

    def completed_state(self, stage: str) -> dict[str, Any] | None:
        """The saved state of a completed stage, or None if it never completed."""
        path = self.stage_dir(stage) / STAGE_STATE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def stale_stages(
        self, stages: Sequence[str], pending: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Completed stages whose inputs on disk changed since they ran: stage -> reason.

        A stage is stale when a stage it read (as recorded in its ``_stage.json``) now holds
        other outputs, or is stale itself. ``pending`` maps stages about to be replaced to the
        hash of their new outputs, to mark what they invalidate before they land.
        ``stages`` must be in run order.
        """
        pending = pending or {}
        stale: dict[str, str] = {}
        for stage in stages:
            state = self.completed_state(stage)
            if stage in pending or state is None:
                continue
            for up, made_from in (state.get("upstream") or {}).items():
                now = pending.get(up) or (self.completed_state(up) or {}).get("hash")
                if up in stale:
                    stale[stage] = f"'{up}' is stale"
                elif now is None:
                    stale[stage] = f"the outputs of '{up}' are gone"
                elif now != made_from:
                    stale[stage] = f"'{up}' was rerun with other inputs since '{stage}' ran"
                else:
                    continue
                break
        return stale

    def refresh_stale(
        self, stages: Sequence[str], pending: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Mark completed stages ``stale`` (or ``done`` again) in summary.json; returns the stale.

        Entries are also brought in line with the stages' ``_stage.json`` (a kill between a
        folder swap and the summary update leaves them behind).
        """
        stale = self.stale_stages(stages, pending)
        summary = self.load_summary()
        changed = False
        for stage, entry in summary["stages"].items():
            if entry.get("status") not in ("done", "stale") or stage in (pending or {}):
                continue
            state = self.completed_state(stage)
            if state is not None and not _same(state.get("metrics", {}), entry.get("metrics")):
                # killed between a stage's swap and its summary entry: the folder is the truth
                entry["metrics"] = state.get("metrics", {})
                entry["artifacts"] = {
                    k: f"{stage}/{v}" for k, v in state.get("artifacts", {}).items()
                }
                changed = True
            want = "stale" if stage in stale else "done"
            if entry["status"] != want or entry.get("stale_because") != stale.get(stage):
                entry["status"] = want
                entry.pop("stale_because", None)
                if stage in stale:
                    entry["stale_because"] = stale[stage]
                changed = True
        if changed:
            write_json_atomic(self.summary_path, summary)
        return stale


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (NaN equals NaN, as written)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def write_stage_state(
    stage_dir: Path,
    input_hash: str,
    result: StageResult,
    upstream: Mapping[str, str] | None = None,
    made_from: Mapping[str, Any] | None = None,
) -> None:
    """Record what a completed stage was made from.

    Args:
        upstream: hash of each stage whose outputs it read, as they were on disk.
        made_from: the recipe section and seed (the run's recipe.yaml is assembled from these).
    """
    state: dict[str, Any] = {
        "hash": input_hash,
        "metrics": result.metrics,
        "artifacts": result.artifacts,
    }
    if upstream is not None:
        state["upstream"] = dict(upstream)
    if made_from is not None:
        state["made_from"] = dict(made_from)
    write_json_atomic(stage_dir / STAGE_STATE, state)


# ---------------------------------------------------------------- opening for writing


@contextlib.contextmanager
def open_run_dir(root: str | Path, name: str) -> Iterator[RunDir]:
    """The run directory for the one process that writes it: checked, locked, cleaned.

    A folder is used when it is new or empty, holds the marker, or holds nothing but an
    earlier lmforge version's run files; the marker is then written. The lock is held until
    the block exits (or the process dies).

    Raises:
        LmforgeError: the path is a file or a foreign non-empty folder, cannot be written, or
            another process holds the run (the message names it).
    """
    root = Path(root)
    shown = _shown(root)
    lock = DirLock(root / LOCK_FILE, f"run directory {shown}")
    try:
        check_run_dir(root)
        root.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as e:
        raise LmforgeError(cannot_write_message(shown, e)) from None
    try:
        try:
            check_run_dir(root)  # again: now that it is locked, nobody else changes it
            if not (root / MARKER).exists():
                created = datetime.now().isoformat(timespec="seconds")
                write_json_atomic(
                    root / MARKER, {"lmforge_run": 1, "name": name, "created": created}
                )
            restore_and_clean(root)
            run = RunDir(root, name)
        except OSError as e:
            raise LmforgeError(cannot_write_message(shown, e)) from None
        yield run
    finally:
        lock.release()


def check_run_dir(root: Path) -> None:
    """Refuse a path that is a file, or a non-empty folder that is not an lmforge run."""
    shown = _shown(root)
    if root.exists() and not root.is_dir():
        raise LmforgeError(
            f"the run directory {shown} is a file; give --out a folder (a new one, or an "
            "earlier run of lmforge)"
        )
    if not root.is_dir():
        return
    entries = set(os.listdir(root)) - {LOCK_FILE}
    if not entries or MARKER in entries or _is_earlier_version_run(root, entries):
        return
    listing = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
    raise LmforgeError(
        f"{shown} is not empty and is not an lmforge run directory (it has no {MARKER} "
        f"file; it holds {listing}). A run replaces stage folders such as data/ and writes "
        "recipe.yaml and summary.json, which could destroy files of yours, so lmforge writes "
        "only into a new or empty folder or an earlier run. Give --out a new folder, e.g. "
        "--out runs/my-run."
    )


def _is_earlier_version_run(root: Path, entries: set[str]) -> bool:
    """A run made before the marker existed: a summary, and nothing lmforge does not write."""
    try:
        summary = json.loads((root / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(summary, dict) or not isinstance(summary.get("stages"), dict):
        return False
    for entry in entries:
        if entry in _RUN_FILES or _is_leftover(entry) or re.fullmatch(r"\.\w+\.partial", entry):
            continue
        if not (root / entry / STAGE_STATE).is_file():
            return False
    return True


def _is_leftover(name: str) -> bool:
    """Temporary names of ``core.atomic``: what a killed writer may leave behind."""
    return name.startswith((".tmp-", ".old-")) or re.fullmatch(r"\..+\.tmp", name) is not None


def restore_and_clean(root: Path) -> None:
    """Undo what a killed writer left: put back a stage folder caught mid-swap, delete temps.

    Only safe while holding the run's lock (no other writer's temporary files can exist).
    A folder swap renames ``X`` to ``.old-X`` then the new version to ``X``: when ``X`` is
    missing, ``.old-X`` is the last complete version. ``.<stage>.partial`` folders are kept
    (``--resume`` continues them); temporary files inside them are removed.
    """
    for entry in sorted(root.iterdir()):
        if not entry.name.startswith(".old-"):
            continue
        final = root / entry.name.removeprefix(".old-")
        if not final.exists() and not final.is_symlink() and entry.is_dir():
            os.replace(entry, final)
            logger.warning("put back %s, interrupted while being replaced", final)
        else:
            _remove(entry)
    bases = [root] + [p for p in root.glob(".*.partial") if p.is_dir() and not p.is_symlink()]
    for base in bases:
        for dirpath, dirnames, filenames in os.walk(base):
            for name in [d for d in dirnames if d.startswith(".tmp-")]:
                dirnames.remove(name)
                shutil.rmtree(Path(dirpath) / name, ignore_errors=True)
            for name in filenames:
                if _is_leftover(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(Path(dirpath) / name)
            if base == root:
                break  # stage folders are complete; only the run's own top level


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def latest_run(runs_dir: Path, name: str) -> Path | None:
    """The newest run of exactly the recipe ``name`` in ``runs_dir``, or None.

    Runs are named ``<name>-<YYYYmmdd-HHMMSS>[-<n>]``; another recipe whose name merely starts
    the same (``quickstart-v2`` for ``quickstart``) never matches, and the newest is decided by
    the time stamp and counter, not by sorting names.
    """
    if not runs_dir.is_dir():
        return None
    best: tuple[tuple[str, int], Path] | None = None
    for path in runs_dir.iterdir():
        match = path.name.startswith(f"{name}-") and _STAMP.fullmatch(path.name[len(name) + 1 :])
        if not match or not path.is_dir():
            continue
        if not (path / MARKER).exists() and not (path / "summary.json").exists():
            continue
        if _marker(path).get("name", name) != name:
            continue
        key = (match["stamp"], int(match["n"] or 1))
        if best is None or key > best[0]:
            best = (key, path)
    return best[1] if best else None


def _marker(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _shown(root: Path) -> str:
    """The path as the user gave it; the current folder spelled out ('' and '.' alike)."""
    return f"{Path.cwd()} (the current folder)" if str(root) in ("", ".") else str(root)


def cannot_write_message(shown: str, error: OSError) -> str:
    """One sentence for an OSError met while writing a run directory, with what to do."""
    if is_disk_full(error):
        return no_space_message(error, Path(error.filename or "."), f"preparing {shown}")
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename and str(error.filename) != shown else ""
    return (
        f"cannot write the run directory {shown}{where}: {reason}. Give --out a folder you can "
        "write (a new one, or an earlier run of lmforge)."
    )
